/**
 * The sandboxes' resolver (dns.ts) against an upstream DNS server this file runs on 127.0.0.1
 * (UDP and TCP, fixed records whose addresses are 127.0.0.x and never connected to): local names,
 * forwarding with an ID of its own and only a matching answer relayed, REFUSED without outbound
 * access (the upstream never asked), ANY/AXFR refused, malformed queries dropped or FORMERR,
 * other opcodes NOTIMP, a long answer cut to TC over UDP and whole over TCP, the in-flight bound,
 * SERVFAIL when the upstream is silent, and Node's own resolver (c-ares) as a real client.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { Resolver as NodeResolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dnsUpstreams, listenResolver, MAX_IN_FLIGHT, parseQuery, resolvConf, type Resolver, type ResolverScope } from './dns.js';
import { encodeName, startDnsUpstream, type DnsUpstream } from './test-dns-upstream.js';

function query(name: string, type = 1, options: { id?: number; flags?: number; counts?: [number, number, number, number]; tail?: Buffer } = {}): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(options.id ?? 0x1234, 0);
  header.writeUInt16BE(options.flags ?? 0x0100, 2);
  (options.counts ?? [1, 0, 0, 0]).forEach((count, index) => header.writeUInt16BE(count, 4 + 2 * index));
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2);
  return Buffer.concat([header, encodeName(name), question, options.tail ?? Buffer.alloc(0)]);
}

interface Reply {
  id: number;
  flags: number;
  rcode: number;
  truncated: boolean;
  answers: string[];
}

/** Reads a reply's header and its A records (names compressed to the question, as both sides write them). */
function readReply(message: Buffer): Reply {
  const id = message.readUInt16BE(0);
  const flags = message.readUInt16BE(2);
  const questions = message.readUInt16BE(4);
  const count = message.readUInt16BE(6);
  let offset = 12;
  for (let i = 0; i < questions; i++) {
    while (message[offset] !== 0) offset += message[offset] + 1;
    offset += 5;
  }
  const answers: string[] = [];
  for (let i = 0; i < count; i++) {
    offset += 2; // the name: a pointer
    const type = message.readUInt16BE(offset);
    const length = message.readUInt16BE(offset + 8);
    if (type === 1) answers.push([...message.subarray(offset + 10, offset + 14)].join('.'));
    offset += 10 + length;
  }
  return { id, flags, rcode: flags & 0x0f, truncated: Boolean(flags & 0x0200), answers };
}

/** 60 addresses: 12 + question + 60 × 16 bytes, far over 512. */
const BIG = Array.from({ length: 60 }, (_, index) => `127.0.1.${index + 1}`);

/** Sends `message` to the resolver over UDP; the reply, or undefined when none came within `waitMs`. */
function askUdp(port: number, message: Buffer, waitMs = 3_000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(undefined);
    }, waitMs);
    socket.on('message', (reply) => {
      clearTimeout(timer);
      socket.close();
      resolve(reply);
    });
    socket.send(message, port, '127.0.0.1');
  });
}

function askTcp(port: number, message: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let buffered = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('the resolver closed the connection')));
    socket.on('connect', () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(message.length, 0);
      socket.write(Buffer.concat([length, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        socket.destroy();
        resolve(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
      }
    });
  });
}

describe('the sandboxes\' resolver', () => {
  let upstream: DnsUpstream;
  let outbound: Resolver;
  let closedOff: Resolver;

  before(async () => {
    upstream = await startDnsUpstream({ 'shop.example': ['127.0.0.7'], 'big.example': BIG, 'spoof.example': 'spoof', 'silent.example': 'silent' });
    const names = { cache: '10.231.0.1', 'cache-alias': '10.231.0.1' };
    const upstreams = [{ host: '127.0.0.1', port: upstream.port }];
    outbound = await listenResolver('127.0.0.1', 0, { names, forward: true, upstreams } satisfies ResolverScope);
    closedOff = await listenResolver('127.0.0.1', 0, { names, forward: false, upstreams });
  });

  after(async () => {
    await outbound.close();
    await closedOff.close();
    await upstream.stop();
  });

  test('answers its links\' names itself, in any case, and NODATA for other types of them', async () => {
    for (const resolver of [outbound, closedOff]) {
      const reply = readReply((await askUdp(resolver.port, query('CaChE', 1, { id: 77 })))!);
      assert.deepEqual([reply.id, reply.rcode, reply.answers], [77, 0, ['10.231.0.1']]);
      assert.ok(reply.flags & 0x8000, 'a response');
      const alias = readReply((await askUdp(resolver.port, query('cache-alias.')))!);
      assert.deepEqual(alias.answers, ['10.231.0.1']);
      const aaaa = readReply((await askUdp(resolver.port, query('cache', 28)))!);
      assert.deepEqual([aaaa.rcode, aaaa.answers], [0, []]);
    }
    assert.equal(upstream.asked('cache').length, 0, 'local names never go upstream');
  });

  test('forwards other names under an ID of its own and relays the answer with the client\'s', async () => {
    const reply = readReply((await askUdp(outbound.port, query('shop.example', 1, { id: 4242 })))!);
    assert.deepEqual([reply.id, reply.rcode, reply.answers], [4242, 0, ['127.0.0.7']]);
    const asked = upstream.asked('shop.example');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].transport, 'udp');
  });

  test('relays only the answer whose ID and question match (a forged one is ignored)', async () => {
    const reply = readReply((await askUdp(outbound.port, query('spoof.example')))!);
    assert.deepEqual(reply.answers, ['127.0.0.9']);
  });

  test('refuses other names to an instance without outbound access, without asking upstream', async () => {
    const before = upstream.received.length;
    const reply = readReply((await askUdp(closedOff.port, query('shop.example')))!);
    assert.deepEqual([reply.rcode, reply.answers], [5, []]);
    assert.equal(upstream.received.length, before);
  });

  test('refuses ANY, AXFR and classes other than IN', async () => {
    const before = upstream.received.length;
    for (const type of [255, 252, 251]) assert.equal(readReply((await askUdp(outbound.port, query('shop.example', type)))!).rcode, 5, `type ${type}`);
    const chaos = query('shop.example');
    chaos.writeUInt16BE(3, chaos.length - 2);
    assert.equal(readReply((await askUdp(outbound.port, chaos))!).rcode, 5);
    assert.equal(upstream.received.length, before);
  });

  test('drops what is no query and answers FORMERR or NOTIMP to bad ones', async () => {
    // Dropped: too short, a response, too long.
    assert.equal(await askUdp(outbound.port, Buffer.from([1, 2, 3]), 300), undefined);
    assert.equal(await askUdp(outbound.port, query('shop.example', 1, { flags: 0x8100 }), 300), undefined);
    assert.equal(await askUdp(outbound.port, query('shop.example', 1, { tail: Buffer.alloc(600) }), 300), undefined);
    // FORMERR: two questions, an answer record in a query, a compression pointer, a label past the end, trailing bytes.
    const formerr = async (message: Buffer) => readReply((await askUdp(outbound.port, message))!).rcode;
    assert.equal(await formerr(query('shop.example', 1, { counts: [2, 0, 0, 0] })), 1);
    assert.equal(await formerr(query('shop.example', 1, { counts: [1, 1, 0, 0] })), 1);
    const pointer = Buffer.concat([query('x').subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    assert.equal(await formerr(pointer), 1);
    const overrun = Buffer.concat([query('x').subarray(0, 12), Buffer.from([40, 0x61, 0x62])]);
    assert.equal(await formerr(overrun), 1);
    assert.equal(await formerr(query('shop.example', 1, { tail: Buffer.from([1, 2, 3]) })), 1);
    // A name over 255 bytes.
    assert.equal(await formerr(query(Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.'))), 1);
    // NOTIMP: a STATUS (opcode 2) or an UPDATE (5).
    assert.equal(readReply((await askUdp(outbound.port, query('shop.example', 1, { flags: 2 << 11 })))!).rcode, 4);
    assert.equal(readReply((await askUdp(outbound.port, query('shop.example', 1, { flags: 5 << 11 })))!).rcode, 4);
    // An EDNS OPT record is a query still; anything else in the additional section is not.
    const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    assert.equal(readReply((await askUdp(outbound.port, query('shop.example', 1, { counts: [1, 0, 0, 1], tail: opt })))!).rcode, 0);
    const notOpt = Buffer.from([0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert.equal(await formerr(query('shop.example', 1, { counts: [1, 0, 0, 1], tail: notOpt })), 1);
    assert.deepEqual(parseQuery(Buffer.alloc(11)), { drop: true });
  });

  test('cuts an answer too long for UDP to its question with TC, and gives it whole over TCP', async () => {
    const cut = readReply((await askUdp(outbound.port, query('big.example', 1, { id: 9 })))!);
    assert.deepEqual([cut.id, cut.truncated, cut.answers], [9, true, []]);
    const whole = readReply(await askTcp(outbound.port, query('big.example', 1, { id: 10 })));
    assert.deepEqual([whole.id, whole.truncated, whole.answers], [10, false, BIG]);
    assert.deepEqual(upstream.asked('big.example').map((entry) => entry.transport), ['udp', 'tcp']);
    // With EDNS and room enough for it (up to 1232 bytes), the UDP answer comes whole.
    const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    const roomy = readReply((await askUdp(outbound.port, query('big.example', 1, { counts: [1, 0, 0, 1], tail: opt })))!);
    assert.deepEqual([roomy.truncated, roomy.answers.length], [false, BIG.length]);
  });

  test('answers SERVFAIL when the upstream is silent, and beyond its in-flight bound at once', async () => {
    const silent = askUdp(outbound.port, query('silent.example', 1, { id: 1 }), 10_000);
    const queued = Array.from({ length: MAX_IN_FLIGHT - 1 }, (_, index) => askUdp(outbound.port, query('silent.example', 1, { id: 2 + index }), 10_000));
    // Wait until the upstream has them all, then one more is refused straight away.
    const deadline = Date.now() + 5_000;
    while (upstream.asked('silent.example').length < MAX_IN_FLIGHT && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(upstream.asked('silent.example').length, MAX_IN_FLIGHT);
    const started = Date.now();
    const over = readReply((await askUdp(outbound.port, query('shop.example', 1, { id: 999 })))!);
    assert.equal(over.rcode, 2);
    assert.ok(Date.now() - started < 1_000, 'refused without waiting');
    assert.equal(readReply((await silent)!).rcode, 2);
    for (const reply of await Promise.all(queued)) assert.equal(readReply(reply!).rcode, 2);
    // Once they are answered, it forwards again.
    assert.deepEqual(readReply((await askUdp(outbound.port, query('shop.example')))!).answers, ['127.0.0.7']);
  });

  test('takes queries only from its instance\'s address when it has one', async () => {
    const upstreams = [{ host: '127.0.0.1', port: upstream.port }];
    const elsewhere = await listenResolver('127.0.0.1', 0, { names: { cache: '10.231.0.1' }, forward: true, upstreams, client: '127.0.0.2' });
    try {
      assert.equal(await askUdp(elsewhere.port, query('cache'), 300), undefined, 'a query from another address is dropped');
      await assert.rejects(askTcp(elsewhere.port, query('cache')));
    } finally {
      await elsewhere.close();
    }
  });

  test('serves a real client (Node\'s c-ares): answers, REFUSED, and the TCP retry after TC', async () => {
    const client = new NodeResolver({ timeout: 3_000, tries: 1 });
    client.setServers([`127.0.0.1:${outbound.port}`]);
    assert.deepEqual(await client.resolve4('shop.example'), ['127.0.0.7']);
    assert.deepEqual(await client.resolve4('cache'), ['10.231.0.1']);
    assert.deepEqual((await client.resolve4('big.example')).sort(), [...BIG].sort());
    const refusing = new NodeResolver({ timeout: 3_000, tries: 1 });
    refusing.setServers([`127.0.0.1:${closedOff.port}`]);
    await assert.rejects(refusing.resolve4('shop.example'), { code: 'EREFUSED' });
  });
});

describe('the upstreams', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'alto-dns-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('come from ALTO_DNS_UPSTREAM, else the host\'s resolv.conf, never from the sandboxes\' network', () => {
    const conf = join(dir, 'resolv.conf');
    writeFileSync(conf, '# a comment\nsearch example\nnameserver 127.0.0.53\nnameserver 10.231.0.1\nnameserver ::1\nnameserver fe80::1%eth0\noptions edns0\n');
    assert.deepEqual(dnsUpstreams({}, conf), [
      { host: '127.0.0.53', port: 53 },
      { host: '::1', port: 53 },
    ]);
    assert.deepEqual(dnsUpstreams({ ALTO_DNS_UPSTREAM: '127.0.0.1:5353, [::1]:54' }, conf), [
      { host: '127.0.0.1', port: 5353 },
      { host: '::1', port: 54 },
    ]);
    assert.throws(() => dnsUpstreams({ ALTO_DNS_UPSTREAM: '10.231.4.1:53' }, conf), /ALTO_DNS_UPSTREAM/);
    assert.throws(() => dnsUpstreams({ ALTO_DNS_UPSTREAM: 'dns.example:53' }, conf), /ALTO_DNS_UPSTREAM/);
    assert.deepEqual(dnsUpstreams({}, join(dir, 'missing')), []);
  });

  test('the resolv.conf an instance gets', () => {
    assert.equal(resolvConf('10.231.0.1'), "# Alto's resolver for this instance\nnameserver 10.231.0.1\noptions ndots:0");
  });
});
