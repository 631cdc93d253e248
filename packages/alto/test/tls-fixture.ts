/**
 * Helpers for the HTTPS tests: a certificate authority of the test's own and certificates it
 * signs (made by the openssl command), requests over TLS to 127.0.0.1 with a given SNI name
 * (HTTP/2 or HTTP/1.1, verified against a given root), the certificate a name is served with,
 * and a busybox app whose CGI answers the X-Forwarded-Proto and the body it was sent.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { buildImage, busyboxBinary, type BuiltImage } from './images-fixture.js';

export interface TestAuthority {
  dir: string;
  /** The root certificate's file (for NODE_EXTRA_CA_CERTS). */
  rootPath: string;
  /** The root certificate, PEM. */
  root: string;
  /** Writes a certificate for `names` signed by this authority; returns its files. */
  issue(names: string[], file: string): { certificate: string; key: string; certificatePath: string; keyPath: string };
  remove(): void;
}

export function testAuthority(): TestAuthority {
  const dir = mkdtempSync(join(tmpdir(), 'alto-tls-'));
  const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Alto test root']);
  const root = execFileSync('cat', [join(dir, 'ca.pem')]).toString();
  let serial = 1;
  return {
    dir,
    rootPath: join(dir, 'ca.pem'),
    root,
    issue(names, file) {
      const certificatePath = join(dir, `${file}.pem`);
      const keyPath = join(dir, `${file}.key`);
      const extensions = join(dir, `${file}.ext`);
      writeFileSync(extensions, `subjectAltName=${names.map((name) => (/^[0-9.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`)).join(',')}\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${file}.new.key`, '-out', `${file}.csr`, '-subj', `/CN=${names[0]}`]);
      openssl(['x509', '-req', '-in', `${file}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', String(serial++), '-days', '1', '-extfile', extensions, '-out', `${file}.new.pem`]);
      const certificate = execFileSync('cat', [join(dir, `${file}.new.pem`)]).toString();
      const key = execFileSync('cat', [join(dir, `${file}.new.key`)]).toString();
      // Written in place, key first: as a tool renewing the files would.
      writeFileSync(keyPath, key);
      writeFileSync(certificatePath, certificate);
      return { certificate, key, certificatePath, keyPath };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** The certificate 127.0.0.1:`port` serves for `serverName` (undefined: no SNI, as a client of an address sends none), not verified, or the handshake's error. */
export function servedCertificate(port: number, serverName: string | undefined, protocols = ['h2', 'http/1.1']): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...(serverName !== undefined ? { servername: serverName } : {}), rejectUnauthorized: false, ALPNProtocols: protocols }, () => {
      const certificate = socket.getPeerCertificate();
      socket.end();
      resolve(certificate);
    });
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('the TLS handshake timed out')));
  });
}

export interface TlsResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  /** The protocol ALPN chose: `h2` or `http/1.1`. */
  protocol: string | false | null;
}

export interface TlsRequest {
  port: number;
  host: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** The roots to verify against (PEM). */
  ca: string | string[];
}

/** One request over HTTP/2 to 127.0.0.1 with `host` as the SNI name and authority, verified against `ca`. */
export function http2Request(options: TlsRequest): Promise<TlsResult> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://${options.host}:${options.port}`, { ca: options.ca, servername: options.host, host: '127.0.0.1', port: options.port } as never);
    session.on('error', reject);
    const stream = session.request({ ':method': options.method ?? 'GET', ':path': options.path ?? '/', ...options.headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    stream.on('response', (received) => {
      status = Number(received[':status']);
      headers = received as typeof headers;
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      const protocol = session.alpnProtocol ?? null;
      session.close();
      resolve({ status, body: Buffer.concat(chunks).toString('utf8'), headers, protocol });
    });
    stream.on('error', reject);
    stream.setTimeout(15_000, () => stream.close());
    stream.end(options.body);
  });
}

/** One request over HTTP/1.1 with TLS (ALPN offers http/1.1 only), as `http2Request`. */
export function https1Request(options: TlsRequest): Promise<TlsResult> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      {
        host: '127.0.0.1',
        port: options.port,
        servername: options.host,
        path: options.path ?? '/',
        method: options.method ?? 'GET',
        headers: { host: options.host, ...options.headers },
        ca: options.ca,
        agent: false,
        ALPNProtocols: ['http/1.1'],
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            headers: response.headers,
            protocol: (response.socket as unknown as { alpnProtocol?: string | false }).alpnProtocol ?? null,
          }),
        );
        response.on('error', reject);
      },
    );
    request.setTimeout(15_000, () => request.destroy(new Error('request timed out')));
    request.on('error', reject);
    request.end(options.body);
  });
}

const ECHO_CGI = [
  '#!/bin/sh',
  'printf "Content-Type: text/plain\\r\\n\\r\\n"',
  'printf "proto=%s\\n" "$HTTP_X_FORWARDED_PROTO"',
  'printf "host=%s\\n" "$HTTP_X_FORWARDED_HOST"',
  'printf "method=%s\\n" "$REQUEST_METHOD"',
  'if [ -n "$CONTENT_LENGTH" ]; then printf "body="; head -c "$CONTENT_LENGTH"; printf "\\n"; fi',
  '',
].join('\n');

/** busybox httpd on 8080: `/` answers "echo app", `/cgi-bin/echo` the request's proto, host, method and body; `cgi` adds scripts under /cgi-bin/ by name. */
export function echoImage(cgi: Record<string, string> = {}): Promise<BuiltImage> {
  const applets = ['sh', 'httpd', 'printf', 'head', 'cat', 'sleep'];
  return buildImage({
    layers: [
      [
        { type: 'dir', path: 'bin/' },
        { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
        ...applets.map((applet) => ({ type: 'symlink' as const, path: `bin/${applet}`, target: 'busybox' })),
        { type: 'dir', path: 'tmp/', mode: 0o1777 },
        { type: 'dir', path: 'www/' },
        { type: 'file', path: 'www/index.html', content: 'echo app\n' },
        { type: 'dir', path: 'www/cgi-bin/' },
        { type: 'file', path: 'www/cgi-bin/echo', content: ECHO_CGI, mode: 0o755 },
        ...Object.entries(cgi).map(([name, content]) => ({ type: 'file' as const, path: `www/cgi-bin/${name}`, content, mode: 0o755 })),
      ],
    ],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/httpd'], Cmd: ['-f', '-p', '8080', '-h', '/www'], ExposedPorts: { '8080/tcp': {} } },
  });
}
