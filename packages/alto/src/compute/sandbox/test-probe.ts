/**
 * @module compute/sandbox/test-probe
 * The host's side of the probe the network tests (outbound.test.ts, platform-access.test.ts) put
 * in their instances: a busybox httpd CGI at /cgi-bin/probe?HOST:PORT/PATH that tries the target
 * from inside the sandbox and answers `open` (with what it read) or what stopped it.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { Instance } from './port.js';

/** One HTTP/1.0 GET read to the server's close (busybox httpd's CGI answers carry no length). */
export function httpGet(host: string, port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, host, () => socket.write(`GET ${path} HTTP/1.0\r\nHost: sandbox\r\n\r\n`));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk) => (text += chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      // The first blank line ends the head (httpd ends a CGI's head with a bare \n).
      const blank = /\r?\n\r?\n/.exec(text);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: blank ? text.slice(blank.index + blank[0].length) : '' });
    });
  });
}

/** Asks the instance's probe to GET http://`target`/`path` (target: HOST:PORT) and returns its answer. */
export async function probeFrom(instance: Instance, target: string, path = ''): Promise<string> {
  const response = await httpGet(instance.host, instance.port, `/cgi-bin/probe?${target}/${path}`);
  assert.equal(response.status, 200, `the probe in ${instance.id} answered ${response.status}`);
  return response.body;
}

/** Whether the probe's answer says the target took the connection. */
export function isOpen(answer: string): boolean {
  return answer.split('\n')[0] === 'open';
}

/** The host's end of an instance's veth (its gateway, one below its address): where its traffic leaves the namespace. */
export function gatewayOf(instance: Instance): string {
  const parts = instance.host.split('.').map(Number);
  parts[3]! -= 1;
  return parts.join('.');
}
