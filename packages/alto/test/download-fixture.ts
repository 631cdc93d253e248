/**
 * Downloads for the export tests, with node:http rather than fetch: the status, the headers and
 * the body, or only its first `keep` bytes, after which the client goes away (as a broken link
 * does), so a test can resume from there. An https: URL is verified against the roots in `ca`.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface Download {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function download(url: string, headers: Record<string, string>, options: { method?: string; keep?: number; ca?: string } = {}): Promise<Download> {
  const keep = options.keep ?? Infinity;
  const send = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const request = send(url, { method: options.method ?? 'GET', headers, ...(options.ca !== undefined ? { ca: options.ca } : {}) }, (response) => {
      const chunks: Buffer[] = [];
      let held = 0;
      const done = () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).subarray(0, Math.min(held, keep)) });
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        held += chunk.length;
        if (held >= keep) {
          request.destroy();
          done();
        }
      });
      response.on('end', done);
      response.on('error', () => undefined);
    });
    request.on('error', (error) => (request.destroyed ? undefined : reject(error)));
    request.end();
  });
}
