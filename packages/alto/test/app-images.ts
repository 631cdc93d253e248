/**
 * Real app images for the app tests, built by the tests from what the host has installed:
 * a busybox httpd serving a page, a Node.js HTTP app (the host's own `node` with the shared
 * libraries `ldd` lists), Debian's `redis-server` with its libraries, Debian's PostgreSQL 15 with
 * an entrypoint like the official image's, and Debian's adminer 4.8.1 on its PHP 8.2 laid out as
 * the official adminer image is. Nothing is downloaded.
 *
 * Building the Node.js image gzips about 100 MB, so each built image is cached as files in a
 * folder under the system temp folder, keyed by everything that goes into it: several test files
 * (and runs) share one build. Two processes building at once each write a temporary folder and
 * rename it into place; the loser drops its copy, so a reader never sees a half-written image.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildImage, busyboxBinary, type BuiltBlob, type BuiltImage, type BuiltLayer, type ImageOptions, type LayerEntry } from './images-fixture.js';

/** Bumped when what the builders below produce changes, so old cached images are not reused. */
const FIXTURE_VERSION = 1;

/** Where built images are cached (`ALTO_TEST_IMAGE_CACHE` overrides). */
export function appImageCacheDir(): string {
  return process.env.ALTO_TEST_IMAGE_CACHE ?? join(tmpdir(), 'alto-test-app-images');
}

export const HTTPD_PAGE = '<h1>hello from busybox httpd</h1>\n';
export const HTTPD_PORT = 8080;
export const NODE_APP_PORT = 8080;
export const REDIS_PORT = 6379;

const SYSTEM_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** busybox-static with the applets httpd needs, a page at /www/index.html, httpd in the foreground on 8080. */
export function busyboxHttpdImage(): Promise<BuiltImage> {
  const busybox = busyboxBinary();
  const layers: LayerEntry[][] = [
    [
      { type: 'dir', path: 'bin/' },
      { type: 'file', path: 'bin/busybox', content: busybox, mode: 0o755 },
      ...['sh', 'httpd', 'ls', 'cat', 'echo', 'id', 'hostname'].map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
      { type: 'dir', path: 'etc/' },
      { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/sh\n' },
      { type: 'file', path: 'etc/group', content: 'root:x:0:\nwww:x:33:\n' },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
    ],
    [
      { type: 'dir', path: 'www/' },
      { type: 'file', path: 'www/index.html', content: HTTPD_PAGE },
    ],
  ];
  return cachedImage('busybox-httpd', [busyboxInput()], {
    layers,
    config: {
      Env: ['PATH=/bin'],
      Cmd: ['httpd', '-f', '-v', '-p', String(HTTPD_PORT), '-h', '/www'],
      ExposedPorts: { [`${HTTPD_PORT}/tcp`]: {} },
    },
  });
}

/**
 * The app the Node.js image runs. `/` names $GREETING and the hostname; `/stream` is a slow
 * chunked response (`?count=` lines, `?interval=` ms apart); `/crash` exits with code 3;
 * POST `/echo` streams the body back; POST `/hook` logs `hook host=<Host> signed=yes|no <body>`
 * (for cron callbacks) and answers 204; `/headers` answers the request headers as JSON.
 */
export const NODE_APP_SOURCE = `'use strict';
const http = require('node:http');
const os = require('node:os');
const port = Number(process.env.PORT || ${NODE_APP_PORT});
const server = http.createServer((request, response) => {
  const url = new URL(request.url, 'http://app');
  if (request.method === 'GET' && url.pathname === '/') {
    response.end(\`\${process.env.GREETING || 'hello'} from \${os.hostname()}\\n\`);
  } else if (request.method === 'GET' && url.pathname === '/stream') {
    const count = Number(url.searchParams.get('count') || 5);
    const interval = Number(url.searchParams.get('interval') || 200);
    response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
    let sent = 0;
    const tick = () => {
      response.write(\`chunk \${sent}\\n\`);
      sent += 1;
      if (sent >= count) response.end('done\\n');
      else timer = setTimeout(tick, interval);
    };
    let timer = setTimeout(tick, 0);
    response.on('close', () => clearTimeout(timer));
  } else if (url.pathname === '/crash') {
    console.error('crashing on purpose');
    response.end('crashing\\n', () => process.exit(3));
  } else if (request.method === 'POST' && url.pathname === '/echo') {
    response.writeHead(200, { 'content-type': request.headers['content-type'] || 'application/octet-stream' });
    request.pipe(response);
  } else if (request.method === 'POST' && url.pathname === '/hook') {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      console.log(\`hook host=\${request.headers.host} signed=\${request.headers['alto-signature'] ? 'yes' : 'no'} \${body}\`);
      response.writeHead(204);
      response.end();
    });
  } else if (url.pathname === '/headers') {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(request.headers));
  } else {
    response.writeHead(404, { 'content-type': 'text/plain' });
    response.end('not found\\n');
  }
});
server.listen(port, () => console.log(\`listening on \${port}\`));
process.on('SIGTERM', () => {
  console.log('stopping on SIGTERM');
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
`;

/** The host's node binary with its shared libraries and loader, plus /app/server.js. */
export function nodeAppImage(): Promise<BuiltImage> {
  const node = realpathSync(process.execPath);
  const runtime = sharedLibraryEntries(node);
  const inputs = [fileInput(node), ...runtime.inputs];
  const layers: LayerEntry[][] = [
    [
      ...directoriesOf(['usr/local/bin/', ...runtime.entries.map((entry) => entry.path)]),
      { type: 'file', path: 'usr/local/bin/node', content: readFileSync(node), mode: 0o755 },
      ...runtime.entries,
      { type: 'dir', path: 'etc/' },
      { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/app:/bin/sh\n' },
      { type: 'file', path: 'etc/group', content: 'root:x:0:\nnode:x:1000:\n' },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
    ],
    [
      { type: 'dir', path: 'app/' },
      { type: 'file', path: 'app/server.js', content: NODE_APP_SOURCE },
    ],
  ];
  return cachedImage('node-app', inputs, {
    layers,
    config: {
      Env: [SYSTEM_PATH, `PORT=${NODE_APP_PORT}`],
      Entrypoint: ['node'],
      Cmd: ['/app/server.js'],
      WorkingDir: '/app',
      ExposedPorts: { [`${NODE_APP_PORT}/tcp`]: {} },
    },
  });
}

/** Debian's redis-server (package redis-server) with its libraries; data in /data, a volume. */
export function redisImage(): Promise<BuiltImage> {
  const installed = '/usr/bin/redis-server';
  if (!existsSync(installed)) throw new Error('redis-server is not installed: apt-get install redis-server (scripts/test-services.sh does)');
  // Debian's redis-server is a link to the one binary redis-check-rdb also is; it picks its role
  // from its name, so in the image it is a file called redis-server.
  const binary = realpathSync(installed);
  const runtime = sharedLibraryEntries(binary);
  const layers: LayerEntry[][] = [
    [
      ...directoriesOf(['usr/bin/', ...runtime.entries.map((entry) => entry.path)]),
      { type: 'file', path: 'usr/bin/redis-server', content: readFileSync(binary), mode: 0o755 },
      ...runtime.entries,
      { type: 'dir', path: 'etc/' },
      { type: 'file', path: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nredis:x:999:999::/data:/bin/sh\n' },
      { type: 'file', path: 'etc/group', content: 'root:x:0:\nredis:x:999:\n' },
      { type: 'dir', path: 'data/', mode: 0o755 },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
    ],
  ];
  return cachedImage('redis', [fileInput(binary), ...runtime.inputs], {
    layers,
    config: {
      Env: [SYSTEM_PATH],
      Cmd: ['redis-server', '--port', String(REDIS_PORT), '--bind', '0.0.0.0', '--protected-mode', 'no', '--dir', '/data', '--appendonly', 'yes'],
      WorkingDir: '/data',
      Volumes: { '/data': {} },
      ExposedPorts: { [`${REDIS_PORT}/tcp`]: {} },
    },
  });
}

export const POSTGRES_PORT = 5432;
const POSTGRES_HOME = 'usr/lib/postgresql/15';
const POSTGRES_SHARE = 'usr/share/postgresql/15';
/** The postgres user of the official image (its uid and gid). */
const POSTGRES_UID = 999;

/**
 * The official image's docker-entrypoint.sh, in POSIX sh for busybox: as root it makes $PGDATA
 * and the socket folder the postgres user's and runs itself again as that user (setpriv, where
 * the official image has gosu; by its path, since busybox's shell runs its own setpriv applet,
 * which cannot, for the bare name); as postgres, on first start (no PG_VERSION), initdb as
 * $POSTGRES_USER with $POSTGRES_PASSWORD from a file, listen on every address, allow password
 * (scram-sha-256) logins from anywhere and create $POSTGRES_DB (in single-user mode, where the
 * official image starts a temporary server and runs psql); then `exec postgres`.
 */
export const POSTGRES_ENTRYPOINT = `#!/bin/sh
set -eu
: "\${POSTGRES_USER:=postgres}"
: "\${POSTGRES_DB:=$POSTGRES_USER}"
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  find "$PGDATA" /var/run/postgresql ! -user postgres -exec chown postgres:postgres {} +
  exec /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "\${POSTGRES_PASSWORD:-}" ]; then
    echo 'Error: Database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD).' >&2
    exit 1
  fi
  password_file=$(mktemp)
  printf '%s\\n' "$POSTGRES_PASSWORD" > "$password_file"
  initdb --username="$POSTGRES_USER" --pwfile="$password_file" --encoding=UTF8 --locale=C \${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
  rm -f "$password_file"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  printf '\\nhost all all all scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \\"$POSTGRES_DB\\"" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo 'PostgreSQL init process complete; ready for start up.'
fi
exec "$@"
`;

/**
 * PostgreSQL 15 built the way the official image is: Debian's server binaries (postgres and
 * initdb, with their shared libraries, the procedural language and text search modules initdb
 * loads, and the share folder), tzdata, busybox for the shell, util-linux setpriv to drop to the
 * postgres user (999), and docker-entrypoint.sh (`POSTGRES_ENTRYPOINT`). Data in
 * /var/lib/postgresql/data ($PGDATA), stopped with SIGINT (a fast shutdown), as the official
 * image's STOPSIGNAL says.
 */
export function postgresImage(): Promise<BuiltImage> {
  const home = `/${POSTGRES_HOME}`;
  if (!existsSync(`${home}/bin/initdb`)) throw new Error('PostgreSQL 15 is not installed: apt-get install postgresql (scripts/test-services.sh does)');
  // pg_isready too, for health checks (the official image has the client tools).
  const binaries = ['postgres', 'initdb', 'pg_isready'].map((name) => `${home}/bin/${name}`);
  const modules = ['plpgsql.so', 'dict_snowball.so'].map((name) => `${home}/lib/${name}`);
  // util-linux's, not a busybox applet (busybox's setpriv cannot change uid or gid).
  const setpriv = '/usr/bin/setpriv';
  if (!existsSync(setpriv) || realpathSync(setpriv).endsWith('busybox')) throw new Error('util-linux setpriv is not installed at /usr/bin/setpriv');
  const runtime = sharedLibraryEntries(...binaries, ...modules, setpriv);
  const share = filesUnder(`/${POSTGRES_SHARE}`, (path) => !path.startsWith('man/'));
  // tzdata, as the official image has: initdb and postgres look for the zone names there.
  const zones = filesUnder('/usr/share/zoneinfo', (path) => !/^(right|posix)(\/|$)/.test(path));
  const files: LayerEntry[] = [
    ...[...binaries, ...modules].map((path): LayerEntry => ({ type: 'file', path: path.slice(1), content: readFileSync(path), mode: 0o755 })),
    { type: 'file', path: 'usr/bin/setpriv', content: readFileSync(setpriv), mode: 0o755 },
    ...share.map((file): LayerEntry => ({ type: 'file', path: `${POSTGRES_SHARE}/${file}`, content: readFileSync(`/${POSTGRES_SHARE}/${file}`), mode: 0o644 })),
    ...zones.map((file): LayerEntry => ({ type: 'file', path: `usr/share/zoneinfo/${file}`, content: readFileSync(`/usr/share/zoneinfo/${file}`), mode: 0o644 })),
    ...runtime.entries,
  ];
  const applets = ['sh', 'mkdir', 'chmod', 'chown', 'find', 'id', 'mktemp', 'printf', 'echo', 'rm', 'cat', 'ls'];
  const layers: LayerEntry[][] = [
    [
      ...directoriesOf(['bin/', 'etc/', 'usr/local/bin/', 'var/lib/', 'var/run/', ...files.map((entry) => entry.path)]),
      { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
      ...applets.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
      ...files,
      { type: 'file', path: 'etc/passwd', content: `root:x:0:0:root:/root:/bin/sh\npostgres:x:${POSTGRES_UID}:${POSTGRES_UID}::/var/lib/postgresql:/bin/sh\n` },
      { type: 'file', path: 'etc/group', content: `root:x:0:\npostgres:x:${POSTGRES_UID}:\n` },
      { type: 'dir', path: 'var/lib/postgresql/', uid: POSTGRES_UID, gid: POSTGRES_UID, mode: 0o755 },
      { type: 'dir', path: 'var/run/postgresql/', uid: POSTGRES_UID, gid: POSTGRES_UID, mode: 0o3777 },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
    ],
    [{ type: 'file', path: 'usr/local/bin/docker-entrypoint.sh', content: POSTGRES_ENTRYPOINT, mode: 0o755 }],
  ];
  const inputs = [...binaries, ...modules, setpriv].map(fileInput).concat(runtime.inputs, busyboxInput(), share.join(' '), zones.join(' '));
  return cachedImage('postgres', inputs, {
    layers,
    config: {
      Env: [`PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${home}/bin`, 'PGDATA=/var/lib/postgresql/data'],
      Entrypoint: ['docker-entrypoint.sh'],
      Cmd: ['postgres'],
      Volumes: { '/var/lib/postgresql/data': {} },
      ExposedPorts: { [`${POSTGRES_PORT}/tcp`]: {} },
      StopSignal: 'SIGINT',
    },
  });
}

export const ADMINER_PORT = 8080;
const PHP_VERSION = '8.2';
/** Where Debian's PHP 8.2 keeps its extensions (its API number). */
const PHP_EXTENSIONS = '/usr/lib/php/20220829';
/** The adminer user of the official image (a system user). */
const ADMINER_UID = 100;
const ADMINER_GID = 101;

/**
 * The official adminer image's index.php in short: the plugins of plugins-enabled/ loaded, and
 * the login form's server filled with $ADMINER_DEFAULT_SERVER (`db` unless given), so a stack
 * whose database service is called db needs nothing typed but the credentials.
 */
export const ADMINER_INDEX = `<?php
namespace docker {
	function adminer_object() {
		require_once 'plugins/plugin.php';
		class Adminer extends \\AdminerPlugin {
			function loginFormField($name, $heading, $value) {
				if ($name === 'server') {
					$server = htmlspecialchars(getenv('ADMINER_DEFAULT_SERVER') ?: 'db');
					$value = str_replace('name="auth[server]" value=""', 'name="auth[server]" value="' . $server . '"', $value);
				}
				return parent::loginFormField($name, $heading, $value);
			}
		}
		$plugins = [];
		foreach (glob('plugins-enabled/*.php') as $plugin) {
			$plugins[] = require $plugin;
		}
		return new Adminer($plugins);
	}
}
namespace {
	function adminer_object() {
		return \\docker\\adminer_object();
	}
	require 'adminer.php';
}
`;

/** The official image's entrypoint.sh, without its plugin loader: a design's stylesheet linked on first start. */
const ADMINER_ENTRYPOINT = `#!/bin/sh
set -e
if [ -n "\${ADMINER_DESIGN:-}" ] && [ ! -e .adminer-init ]; then
  ln -sf "designs/$ADMINER_DESIGN/adminer.css" .
fi
touch .adminer-init || true
exec "$@"
`;

/** The official php image's docker-php-entrypoint: arguments that are options go to php. */
const PHP_ENTRYPOINT = `#!/bin/sh
set -e
if [ "\${1#-}" != "$1" ]; then
  set -- php "$@"
fi
exec "$@"
`;

/**
 * Adminer 4.8.1 built the way the official `adminer` image is, from Debian's packages (adminer,
 * php8.2-cli, php8.2-pgsql) where the official one downloads them: the single-file adminer.php
 * with its plugins and designs in /var/www/html, owned by the adminer user the image runs as,
 * PHP's command-line binary with the pgsql and pdo_pgsql extensions (and the libraries `ldd`
 * lists) and tzdata, no php.ini (PHP's defaults; sessions are files in /var/lib/php/sessions,
 * where Debian's PHP keeps them) but the official image's upload limits, and
 * `php -S [::]:8080 -t /var/www/html`, stopped with SIGINT, as its Dockerfile says.
 */
export function adminerImage(): Promise<BuiltImage> {
  const adminer = '/usr/share/adminer';
  const php = `/usr/bin/php${PHP_VERSION}`;
  if (!existsSync(`${adminer}/adminer.php`) || !existsSync(php) || !existsSync(`${PHP_EXTENSIONS}/pgsql.so`)) {
    throw new Error('adminer and PHP are not installed: apt-get install adminer php-cli php-pgsql php-cgi (scripts/test-services.sh does)');
  }
  const extensions = ['pdo', 'pgsql', 'pdo_pgsql'].map((name) => `${PHP_EXTENSIONS}/${name}.so`);
  const runtime = sharedLibraryEntries(php, ...extensions);
  const plugins = filesUnder(`${adminer}/plugins`, (path) => path.endsWith('.php'));
  const designs = filesUnder(`${adminer}/designs`, (path) => path.endsWith('.css'));
  // tzdata, which Debian's PHP reads its zones from (it has no copy of its own): without it
  // PHP warns of an invalid date.timezone at every start and may crash on a date.
  const zones = filesUnder('/usr/share/zoneinfo', (path) => !/^(right|posix)(\/|$)/.test(path));
  const owned = { uid: ADMINER_UID, gid: ADMINER_GID };
  const site = (path: string, content: string | Buffer): LayerEntry => ({ type: 'file', path: `var/www/html/${path}`, content, mode: 0o644, ...owned });
  const conf = `etc/php/${PHP_VERSION}/cli/conf.d`;
  const files: LayerEntry[] = [
    { type: 'file', path: php.slice(1), content: readFileSync(php), mode: 0o755 },
    ...extensions.map((path): LayerEntry => ({ type: 'file', path: path.slice(1), content: readFileSync(path), mode: 0o644 })),
    { type: 'file', path: `${conf}/10-pdo.ini`, content: 'extension=pdo.so\n' },
    { type: 'file', path: `${conf}/20-pgsql.ini`, content: 'extension=pgsql.so\n' },
    { type: 'file', path: `${conf}/20-pdo_pgsql.ini`, content: 'extension=pdo_pgsql.so\n' },
    { type: 'file', path: `${conf}/0-upload_large_dumps.ini`, content: 'upload_max_filesize = 128M\npost_max_size = 128M\nmemory_limit = 1G\nmax_execution_time = 600\nmax_input_vars = 5000\n' },
    // Adminer 4.8.1 on PHP 8.2 warns of an undefined property on every query result (a notice,
    // not shown, on the PHP 7.4 of the official image): to the log (log_errors is on), not into
    // the page (the built-in server puts even display_errors = stderr into the page).
    { type: 'file', path: `${conf}/0-display_errors.ini`, content: 'display_errors = Off\nlog_errors = On\n' },
    ...zones.map((file): LayerEntry => ({ type: 'file', path: `usr/share/zoneinfo/${file}`, content: readFileSync(`/usr/share/zoneinfo/${file}`), mode: 0o644 })),
    ...runtime.entries,
  ];
  const applets = ['sh', 'ln', 'touch'];
  const layers: LayerEntry[][] = [
    [
      ...directoriesOf(['bin/', 'etc/', 'tmp/', 'usr/local/bin/', 'var/www/', ...files.map((entry) => entry.path)]).filter((entry) => entry.path !== 'tmp/'),
      { type: 'file', path: 'bin/busybox', content: busyboxBinary(), mode: 0o755 },
      ...applets.map((applet): LayerEntry => ({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
      { type: 'symlink', path: 'usr/bin/php', target: `php${PHP_VERSION}` },
      ...files,
      { type: 'file', path: 'etc/passwd', content: `root:x:0:0:root:/root:/bin/sh\nadminer:x:${ADMINER_UID}:${ADMINER_GID}::/home/adminer:/sbin/nologin\n` },
      { type: 'file', path: 'etc/group', content: `root:x:0:\nadminer:x:${ADMINER_GID}:\n` },
      { type: 'file', path: 'etc/nsswitch.conf', content: 'hosts: files dns\n' },
      { type: 'dir', path: 'tmp/', mode: 0o1777 },
      // Debian builds PHP to keep sessions here (the official image's PHP uses /tmp): made as
      // Debian's php-common makes it, writable and not listable by everyone.
      { type: 'dir', path: 'var/lib/' },
      { type: 'dir', path: 'var/lib/php/' },
      { type: 'dir', path: 'var/lib/php/sessions/', mode: 0o1733 },
    ],
    [
      { type: 'dir', path: 'var/www/html/', ...owned },
      { type: 'dir', path: 'var/www/html/plugins-enabled/', ...owned },
      ...directoriesOf([...plugins.map((file) => `plugins/${file}`), ...designs.map((file) => `designs/${file}`)]).map((entry): LayerEntry => ({ ...entry, path: `var/www/html/${entry.path}`, ...owned })),
      site('adminer.php', readFileSync(`${adminer}/adminer.php`)),
      site('index.php', ADMINER_INDEX),
      ...plugins.map((file) => site(`plugins/${file}`, readFileSync(`${adminer}/plugins/${file}`))),
      ...designs.map((file) => site(`designs/${file}`, readFileSync(`${adminer}/designs/${file}`))),
      { type: 'file', path: 'usr/local/bin/entrypoint.sh', content: ADMINER_ENTRYPOINT, mode: 0o755 },
      { type: 'file', path: 'usr/local/bin/docker-php-entrypoint', content: PHP_ENTRYPOINT, mode: 0o755 },
    ],
  ];
  const inputs = [php, ...extensions, `${adminer}/adminer.php`].map(fileInput).concat(runtime.inputs, busyboxInput(), plugins.join(' '), designs.join(' '), zones.join(' '));
  return cachedImage('adminer', inputs, {
    layers,
    config: {
      Env: [SYSTEM_PATH, 'ADMINER_VERSION=4.8.1'],
      Entrypoint: ['entrypoint.sh', 'docker-php-entrypoint'],
      Cmd: ['php', '-S', `[::]:${ADMINER_PORT}`, '-t', '/var/www/html'],
      User: 'adminer',
      WorkingDir: '/var/www/html',
      ExposedPorts: { [`${ADMINER_PORT}/tcp`]: {} },
      StopSignal: 'SIGINT',
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Shared libraries
// ---------------------------------------------------------------------------------------------

interface RuntimeFiles {
  entries: LayerEntry[];
  /** What identifies these files for the cache key. */
  inputs: string[];
}

/**
 * The shared libraries `ldd` lists for some binaries, each at the path the loader looks for it
 * (the real file's bytes under the name the binary asks for), and the dynamic loader itself.
 */
function sharedLibraryEntries(...binaries: string[]): RuntimeFiles {
  const entries: LayerEntry[] = [];
  const inputs: string[] = [];
  const seen = new Set<string>();
  for (const binary of binaries) {
    const output = execFileSync('ldd', [binary], { encoding: 'utf8' });
    if (!output.includes('ld-linux')) throw new Error(`ldd ${binary} names no dynamic loader:\n${output}`);
    for (const line of output.split('\n')) {
      const library = /=>\s+(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
      if (!library || seen.has(library)) continue;
      seen.add(library);
      const real = realpathSync(library);
      entries.push({ type: 'file', path: library.slice(1), content: readFileSync(real), mode: 0o755 });
      inputs.push(`${library} ${fileInput(real)}`);
    }
  }
  return { entries, inputs };
}

/** Directory entries for every parent folder of the given paths, parents first. */
function directoriesOf(paths: string[]): LayerEntry[] {
  const dirs = new Set<string>();
  for (const path of paths) {
    const parts = path.replace(/\/$/, '').split('/');
    const count = path.endsWith('/') ? parts.length : parts.length - 1;
    for (let index = 1; index <= count; index++) dirs.add(parts.slice(0, index).join('/') + '/');
  }
  return [...dirs].sort().map((path) => ({ type: 'dir', path }));
}

/** The files under a folder (paths relative to it) that `keep` keeps, sorted. */
function filesUnder(dir: string, keep: (path: string) => boolean): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((path) => keep(path) && statSync(join(dir, path)).isFile())
    .sort();
}

function fileInput(path: string): string {
  const info = statSync(path);
  return `${path} ${info.size} ${info.mtimeMs}`;
}

function busyboxInput(): string {
  for (const path of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(path)) return fileInput(realpathSync(path));
  return 'no busybox';
}

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

interface CachedImageFile {
  format: BuiltImage['format'];
  manifest: { mediaType: string; digest: string };
  config: { mediaType: string; digest: string };
  layers: { mediaType: string; digest: string; diffId: string }[];
}

const building = new Map<string, Promise<BuiltImage>>();

/** The image from the cache when its inputs match, else built, stored and returned. */
function cachedImage(name: string, inputs: string[], options: ImageOptions): Promise<BuiltImage> {
  const key = createHash('sha256')
    .update(JSON.stringify({ name, version: FIXTURE_VERSION, inputs, config: options.config, layers: options.layers.map(describeLayer) }))
    .digest('hex')
    .slice(0, 24);
  let image = building.get(key);
  if (!image) {
    image = loadOrBuild(join(appImageCacheDir(), `${name}-${key}`), options);
    building.set(key, image);
    image.catch(() => building.delete(key));
  }
  return image;
}

/** What identifies a layer's entries without hashing every byte of a 100 MB binary twice. */
function describeLayer(entries: LayerEntry[]): string[] {
  return entries.map((entry) => {
    if (entry.type !== 'file') return JSON.stringify(entry);
    const content = typeof entry.content === 'string' ? Buffer.from(entry.content) : (entry.content ?? Buffer.alloc(0));
    return `${entry.path} ${entry.mode ?? ''} ${content.length} ${content.length < 65_536 ? content.toString('base64') : ''}`;
  });
}

async function loadOrBuild(dir: string, options: ImageOptions): Promise<BuiltImage> {
  const loaded = load(dir);
  if (loaded) return loaded;
  const image = await buildImage(options);
  store(dir, image);
  return image;
}

function load(dir: string): BuiltImage | undefined {
  const indexPath = join(dir, 'image.json');
  if (!existsSync(indexPath)) return undefined;
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as CachedImageFile;
  const read = (entry: { mediaType: string; digest: string }): BuiltBlob => {
    const bytes = readFileSync(join(dir, entry.digest.slice('sha256:'.length)));
    return { mediaType: entry.mediaType, digest: entry.digest, size: bytes.length, bytes };
  };
  const layers = index.layers.map((entry): BuiltLayer => {
    const blob = read(entry);
    let tar: Buffer | undefined;
    // The uncompressed tar is rarely needed (pushes send the compressed bytes): made on demand.
    return Object.defineProperty({ ...blob, diffId: entry.diffId } as BuiltLayer, 'tar', {
      enumerable: true,
      get: () => (tar ??= blob.mediaType.endsWith('gzip') ? gunzipSync(blob.bytes) : blob.bytes),
    });
  });
  return { format: index.format, manifest: read(index.manifest), config: read(index.config), layers };
}

function store(dir: string, image: BuiltImage): void {
  if (existsSync(join(dir, 'image.json'))) return;
  const temporary = `${dir}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  mkdirSync(temporary, { recursive: true });
  try {
    for (const blob of [image.manifest, image.config, ...image.layers]) writeFileSync(join(temporary, blob.digest.slice('sha256:'.length)), blob.bytes);
    const index: CachedImageFile = {
      format: image.format,
      manifest: { mediaType: image.manifest.mediaType, digest: image.manifest.digest },
      config: { mediaType: image.config.mediaType, digest: image.config.digest },
      layers: image.layers.map((layer) => ({ mediaType: layer.mediaType, digest: layer.digest, diffId: layer.diffId })),
    };
    writeFileSync(join(temporary, 'image.json'), JSON.stringify(index));
    renameSync(temporary, dir);
  } catch (error) {
    // Another process stored the same image first: its copy is as good as ours.
    rmSync(temporary, { recursive: true, force: true });
    if (!existsSync(join(dir, 'image.json'))) throw error;
  }
}
