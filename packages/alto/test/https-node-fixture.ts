/**
 * A node of a cloud that the other nodes reach over HTTPS, for the tests of what they relay to it
 * over TLS (*-two-nodes-https.e2e.test.ts): `alto up` serving HTTPS on a port picked before it
 * starts (the advertised URL names it), with a certificate for 127.0.0.1 from the test's own
 * authority, advertising `https://127.0.0.1:<that port>`; and API calls to it over HTTPS,
 * verified against that authority (its plain port sends requests for 127.0.0.1 to HTTPS, and
 * fetch would not trust the authority).
 */
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { startProcess, type CallResult, type ProcessOptions, type ServerProcess, type TestAlto } from './harness.js';
import { freePort } from './images-fixture.js';
import type { TestAuthority } from './tls-fixture.js';

export interface HttpsNode {
  server: ServerProcess;
  /** Its advertised URL: `https://127.0.0.1:<its HTTPS port>`. */
  url: string;
  httpsPort: number;
  /** POST /v1/{service}/{endpoint} to `url`, as `server.call` does to the plain port. */
  call: TestAlto['call'];
}

/** Starts `alto up` serving HTTPS with a certificate `authority` issues for 127.0.0.1, advertising its HTTPS URL. */
export async function startHttpsNode(authority: TestAuthority, options: ProcessOptions & { certificateFile?: string } = {}): Promise<HttpsNode> {
  const served = authority.issue(['127.0.0.1'], options.certificateFile ?? 'node-https');
  const httpsPort = await freePort();
  const url = `https://127.0.0.1:${httpsPort}`;
  const server = await startProcess({
    ...options,
    args: [...(options.args ?? []), '--https-port', String(httpsPort), '--tls-cert', served.certificatePath, '--tls-key', served.keyPath, '--advertise', url],
  });
  assert.equal(server.httpsPort, httpsPort);
  return { server, url, httpsPort, call: httpsCaller(url, authority.root, server.adminKey) };
}

function httpsCaller(url: string, ca: string, adminKey: string): TestAlto['call'] {
  return (service, endpoint, body = {}, key = adminKey) =>
    new Promise<CallResult>((resolve, reject) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
      if (key) headers.authorization = `Bearer ${key}`;
      const request = httpsRequest(`${url}/v1/${service}/${endpoint}`, { method: 'POST', headers, ca, agent: false }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const answer = Buffer.concat(chunks).toString('utf8');
          const answerHeaders = new Headers();
          for (const [name, value] of Object.entries(response.headers)) if (value !== undefined) answerHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
          resolve({ status: response.statusCode ?? 0, body: answer ? JSON.parse(answer) : undefined, headers: answerHeaders });
        });
        response.on('error', reject);
      });
      request.setTimeout(120_000, () => request.destroy(new Error(`${service}/${endpoint} over HTTPS timed out`)));
      request.on('error', reject);
      request.end(text);
    });
}
