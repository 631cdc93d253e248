/**
 * Helpers for the serverless lifecycle tests (issue 8) and bench/serverless.bench.ts: a busybox
 * httpd image whose CGI `/cgi-bin/ws` answers a websocket upgrade (101) and then writes `tick`
 * every 200 ms for as long as the connection stays open; Status of an app's instance positions
 * (lifecycle state plus the kernel's or QEMU's answer to whether it is frozen); a websocket
 * opened through the edge; the app metrics from `/metrics`.
 */
import { connect, type Socket } from 'node:net';
import type { TestAlto } from './harness.js';
import { buildImage, busyboxBinary, type BuiltImage, type LayerEntry } from './images-fixture.js';

const APPLETS = ['sh', 'httpd', 'sleep', 'echo', 'printf', 'cat'];

/** busybox CGI passes output starting with "HTTP" through as is: a 101, then ticks. */
export const WEBSOCKET_CGI = [
  '#!/bin/sh',
  "printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n'",
  'while echo tick; do sleep 0.2; done',
].join('\n');

/**
 * busybox httpd on 8080 serving `page` at `/` and a websocket-like stream at /cgi-bin/ws. With
 * `bootDelayS`, each instance first writes `booting` and waits that long before it listens (a
 * slow boot, to watch starts overlap).
 */
export function sleepyImage(page = 'awake\n', bootDelayS = 0): Promise<BuiltImage> {
  const httpd = ['httpd', '-f', '-p', '8080', '-h', '/www'];
  const cmd = bootDelayS > 0 ? ['sh', '-c', `echo booting; sleep ${bootDelayS}; exec ${httpd.join(' ')}`] : httpd;
  return buildImage({
    layers: [
      [
        { type: 'dir', path: 'bin/' },
        { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
        ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
        { type: 'dir', path: 'tmp/', mode: 0o1777 },
        { type: 'dir', path: 'www/' },
        { type: 'file', path: 'www/index.html', content: page },
        { type: 'dir', path: 'www/cgi-bin/' },
        { type: 'file', path: 'www/cgi-bin/ws', content: WEBSOCKET_CGI, mode: 0o755 },
      ],
    ],
    config: { Env: ['PATH=/bin'], Cmd: cmd, ExposedPorts: { '8080/tcp': {} } },
  });
}

export interface SlotStatus {
  state: string;
  instance: string;
  in_flight: number;
  since: string;
  frozen?: boolean;
  origin?: string;
}

/** Milliseconds of running time usage/Read holds for the app since yesterday. */
export async function billedMs(alto: TestAlto, key: string, app: string): Promise<number> {
  const read = await alto.call('usage', 'Read', { from: new Date(Date.now() - 86_400_000).toISOString().slice(0, 10) }, key);
  if (read.status !== 200) throw new Error(`usage/Read: ${JSON.stringify(read.body)}`);
  return (read.body.compute as { app: string; running_ms: number }[]).filter((row) => row.app === app).reduce((sum, row) => sum + row.running_ms, 0);
}

/** The app's instance positions as app/Status shows them. */
export async function slotsOf(alto: TestAlto, key: string, name: string): Promise<SlotStatus[]> {
  const status = await alto.call('app', 'Status', { name }, key);
  if (status.status !== 200) throw new Error(`app/Status: ${JSON.stringify(status.body)}`);
  return status.body.service.slots as SlotStatus[];
}

/** An open websocket through the edge: its 101 head, the ticks so far, and close(). */
export interface OpenWebsocket {
  head: string;
  ticks(): number;
  close(): Promise<void>;
}

/** Opens /cgi-bin/ws through the edge with the app's Host; resolves once the 101 and a tick arrived. */
export function openWebsocket(edgePort: number, host: string): Promise<OpenWebsocket> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(edgePort, '127.0.0.1');
    let received = '';
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`no upgrade answer within 30 s; got ${JSON.stringify(received)}`)), 30_000);
    function fail(error: Error) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    }
    socket.on('error', fail);
    socket.on('connect', () => {
      socket.write(`GET /cgi-bin/ws HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      const end = received.indexOf('\r\n\r\n');
      if (settled || end < 0 || !received.slice(end).includes('tick')) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        head: received.slice(0, end),
        ticks: () => received.split('tick').length - 1,
        close: () =>
          new Promise<void>((done) => {
            socket.once('close', () => done());
            socket.destroy();
          }),
      });
    });
    socket.on('close', () => fail(new Error(`the connection closed before the upgrade; got ${JSON.stringify(received)}`)));
  });
}

/** The value of one sample in Prometheus text (`name{labels}`), or 0 when absent. */
export function metricValue(text: string, sample: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(sample + ' ')) return Number(line.slice(sample.length + 1));
  }
  return 0;
}

/** Runs `work` over and over from `clients` loops until `untilMs` passed; returns every status seen. */
export async function requestLoop(clients: number, untilMs: number, work: () => Promise<number>, gapMs: () => number): Promise<number[]> {
  const statuses: number[] = [];
  const deadline = Date.now() + untilMs;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < deadline) {
        try {
          statuses.push(await work());
        } catch (error) {
          statuses.push(-1);
          void error;
        }
        await new Promise((resolve) => setTimeout(resolve, gapMs()));
      }
    }),
  );
  return statuses;
}
