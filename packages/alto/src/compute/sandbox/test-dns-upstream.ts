/**
 * @module compute/sandbox/test-dns-upstream
 * An upstream DNS server for the resolver's tests (dns.test.ts, outbound.test.ts,
 * test/sandbox-dns.e2e.test.ts), on 127.0.0.1, UDP and TCP on the same port: fixed A records
 * (their addresses are data the tests read, never connected to), and the names it was asked.
 * A name's record is a list of addresses, `silent` (never answered) or `spoof` (a forged answer
 * under another ID first, 127.0.0.66, then the real one, 127.0.0.9). Unknown names: NXDOMAIN.
 */
import { createSocket, type Socket as DatagramSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';

export type UpstreamRecord = string[] | 'silent' | 'spoof';

/** A DNS name in wire form. */
export function encodeName(name: string): Buffer {
  return Buffer.concat([...name.split('.').filter(Boolean).map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])), Buffer.from([0])]);
}

/** The question of a message: its name (lower case), type and where the question ends. */
export function readQuestion(message: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = [];
  let offset = 12;
  while (offset < message.length && message[offset] !== 0) {
    labels.push(message.subarray(offset + 1, offset + 1 + message[offset]).toString('latin1'));
    offset += message[offset] + 1;
  }
  if (offset + 5 > message.length) return undefined;
  return { name: labels.join('.').toLowerCase(), type: message.readUInt16BE(offset + 1), end: offset + 5 };
}

/** An answer to `asked` with A records for `addresses` (under `id` in place of the query's, when given). */
export function answerWith(asked: Buffer, addresses: string[], options: { id?: number; rcode?: number } = {}): Buffer {
  const { end } = readQuestion(asked)!;
  const header = Buffer.from(asked.subarray(0, 12));
  if (options.id !== undefined) header.writeUInt16BE(options.id, 0);
  header.writeUInt16BE(0x8180 | (options.rcode ?? 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  header.writeUInt32BE(0, 8);
  const records = addresses.map((address) => {
    const record = Buffer.alloc(16);
    record.writeUInt16BE(0xc00c, 0);
    record.writeUInt16BE(1, 2);
    record.writeUInt16BE(1, 4);
    record.writeUInt32BE(60, 6);
    record.writeUInt16BE(4, 10);
    address.split('.').forEach((part, index) => record.writeUInt8(Number(part), 12 + index));
    return record;
  });
  return Buffer.concat([header, asked.subarray(12, end), ...records]);
}

export interface DnsUpstream {
  port: number;
  /** Every query received: its name, its ID and how it came. */
  received: { name: string; id: number; transport: 'udp' | 'tcp' }[];
  /** The queries received for `name`. */
  asked(name: string): { name: string; id: number; transport: 'udp' | 'tcp' }[];
  stop(): Promise<void>;
}

export async function startDnsUpstream(records: Record<string, UpstreamRecord>): Promise<DnsUpstream> {
  const received: DnsUpstream['received'] = [];
  const answer = (asked: Buffer, transport: 'udp' | 'tcp'): Buffer[] => {
    const question = readQuestion(asked);
    if (asked.length < 12 || !question) return [];
    received.push({ name: question.name, id: asked.readUInt16BE(0), transport });
    const record = records[question.name];
    if (record === undefined) return [answerWith(asked, [], { rcode: 3 })];
    if (record === 'silent') return [];
    if (record === 'spoof') return [answerWith(asked, ['127.0.0.66'], { id: asked.readUInt16BE(0) ^ 0xffff }), answerWith(asked, ['127.0.0.9'])];
    // A records for type A; a known name has no records of other types.
    return [answerWith(asked, question.type === 1 ? record : [])];
  };
  const tcp: Server = createServer((socket) => {
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const asked = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + asked.length);
        for (const reply of answer(asked, 'tcp')) {
          const length = Buffer.alloc(2);
          length.writeUInt16BE(reply.length, 0);
          socket.write(Buffer.concat([length, reply]));
        }
      }
    });
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as { port: number }).port;
  const udp: DatagramSocket = createSocket('udp4');
  udp.on('error', () => undefined);
  udp.on('message', (asked, from) => {
    for (const reply of answer(asked, 'udp')) udp.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => udp.bind(port, '127.0.0.1', resolve));
  return {
    port,
    received,
    asked: (name) => received.filter((entry) => entry.name === name),
    async stop() {
      udp.close();
      await new Promise((resolve) => tcp.close(resolve));
    },
  };
}
