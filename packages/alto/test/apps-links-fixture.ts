/**
 * Helpers for the links tests (apps-links*.e2e.test.ts): a busybox app that reports what its
 * link `cache` gives it and what else it can reach. At start it prints the link's variables,
 * then `link cache: <reply>` for `PING` and `QUIT` sent to $CACHE_SERVICE_HOST:$CACHE_SERVICE_PORT
 * (`+PONG +OK` when redis answers, `no answer` otherwise), then probes (`reach <host>:<port>:
 * open|blocked`) of each `host:port` in $PROBES, of the link's host at each port in $PROBE_PORTS
 * and at the link's port + 1, then `probes-done`,
 * and serves HTTP on 8080 so it counts as ready, with /cgi-bin/ping answering `link cache: ...` as above.
 */
import { buildImage, busyboxBinary, type BuiltImage, type LayerEntry } from './images-fixture.js';

/** GET /cgi-bin/ping: the link's answer to PING and QUIT, now (e.g. after a restore). */
const PING_CGI =
  '#!/bin/sh\nanswer=$(printf "PING\\r\\nQUIT\\r\\n" | nc -w 5 "$CACHE_SERVICE_HOST" "$CACHE_SERVICE_PORT" 2>/dev/null | tr -d "\\r" | xargs echo)\n' +
  'printf "Content-Type: text/plain\\r\\n\\r\\nlink cache: %s\\n" "${answer:-no answer}"\n';

const APPLETS = ['sh', 'httpd', 'sleep', 'echo', 'nc', 'printf', 'tr', 'xargs'];

export function linkProberImage(): Promise<BuiltImage> {
  const script = [
    'echo "env CACHE_SERVICE_HOST=$CACHE_SERVICE_HOST CACHE_SERVICE_PORT=$CACHE_SERVICE_PORT"',
    'answer=$(printf "PING\\r\\nQUIT\\r\\n" | nc -w 5 "$CACHE_SERVICE_HOST" "$CACHE_SERVICE_PORT" 2>/dev/null | tr -d "\\r" | xargs echo)',
    'echo "link cache: ${answer:-no answer}"',
    'for port in $PROBE_PORTS $((CACHE_SERVICE_PORT + 1)); do PROBES="$PROBES $CACHE_SERVICE_HOST:$port"; done',
    'for target in $PROBES; do host=${target%:*}; port=${target##*:}; if echo hello | nc -w 2 $host $port >/dev/null 2>&1; then echo "reach $target: open"; else echo "reach $target: blocked"; fi; done',
    'echo probes-done',
    'exec httpd -f -p 8080 -h /www',
  ].join('\n');
  const layer: LayerEntry[] = [
    { type: 'dir', path: 'bin/' },
    { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
    ...APPLETS.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { type: 'dir', path: 'etc/' },
    { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { type: 'file', path: 'etc/group', content: 'root:x:0:\n' },
    { type: 'dir', path: 'tmp/', mode: 0o1777 },
    { type: 'dir', path: 'www/' },
    { type: 'file', path: 'www/index.html', content: 'link prober\n' },
    { type: 'dir', path: 'www/cgi-bin/' },
    { type: 'file', path: 'www/cgi-bin/ping', content: PING_CGI, mode: 0o755 },
  ];
  return buildImage({
    layers: [layer],
    config: { Env: ['PATH=/bin'], Entrypoint: ['/bin/sh', '-c'], Cmd: [script], ExposedPorts: { '8080/tcp': {} } },
  });
}

/** The prober's stdout lines once it printed `probes-done`. */
export async function proberReport(logs: () => Promise<string[]>, eventually: <T>(probe: () => Promise<T | false | undefined>, what: string, timeoutMs?: number) => Promise<T>): Promise<string[]> {
  return eventually(async () => {
    const lines = await logs();
    return lines.includes('probes-done') && lines;
  }, 'the link prober\'s report', 60_000);
}
