/**
 * The programs Alto runs inside sandboxes, kept as files of their own: every shell script of the
 * package passes shellcheck (busybox's ash runs them: POSIX sh), every JavaScript file is checked
 * by the build's tsc (`// @ts-check`), the guest agent is what guest/agent.s assembles to, and a
 * supervisor's settings.sh gives a real shell back exactly the values it was written with.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { hasCommand } from './common.js';
import { GUEST_FILES_DIR } from './guest-files.js';
import { stopSignalName, supervisorSettings } from './supervisor.js';

const SOURCE_DIR = fileURLToPath(new URL('../../', import.meta.url));

function filesOf(dir: string, wanted: (name: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return filesOf(path, wanted);
    return entry.isFile() && wanted(entry.name) ? [path] : [];
  });
}

test('every shell script passes shellcheck as POSIX sh', () => {
  assert.ok(hasCommand('shellcheck'), 'shellcheck is not installed: apt-get install shellcheck (scripts/test-services.sh does)');
  const scripts = filesOf(SOURCE_DIR, (name) => name.endsWith('.sh'));
  assert.ok(scripts.some((path) => path.endsWith('guest/supervisor.sh')), `found ${scripts.join(', ')}`);
  let findings = '';
  try {
    execFileSync('shellcheck', ['--shell=sh', '--format=gcc', ...scripts], { encoding: 'utf8', stdio: 'pipe' });
  } catch (error) {
    findings = (error as { stdout?: string }).stdout || (error as Error).message;
  }
  assert.equal(findings, '', 'shellcheck found these (fix them, or disable a code on its line with a comment saying why)');
});

test('every JavaScript file is type-checked by the build (// @ts-check, under allowJs)', () => {
  const tsconfig = JSON.parse(readFileSync(join(SOURCE_DIR, '..', 'tsconfig.json'), 'utf8')) as { compilerOptions: { allowJs?: boolean } };
  assert.equal(tsconfig.compilerOptions.allowJs, true);
  const programs = filesOf(SOURCE_DIR, (name) => /\.[cm]?js$/.test(name));
  assert.ok(programs.some((path) => path.endsWith('function-server.mjs')), `found ${programs.join(', ')}`);
  for (const path of programs) assert.match(readFileSync(path, 'utf8'), /^\/\/ @ts-check\n/, `${relative(SOURCE_DIR, path)} must start with // @ts-check`);
});

test('the guest agent is what guest/agent.s assembles to', () => {
  for (const tool of ['as', 'objcopy']) assert.ok(hasCommand(tool), `${tool} is not installed: apt-get install binutils`);
  const dir = mkdtempSync(join(tmpdir(), 'alto-agent-'));
  try {
    execFileSync('as', ['--64', '-o', join(dir, 'agent.o'), join(GUEST_FILES_DIR, 'agent.s')], { stdio: 'pipe' });
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', join(dir, 'agent.o'), join(dir, 'agent')], { stdio: 'pipe' });
    const assembled = readFileSync(join(dir, 'agent'));
    assert.equal(assembled.length, 688);
    assert.ok(assembled.equals(readFileSync(join(GUEST_FILES_DIR, 'agent'))), 'guest/agent is stale: assemble guest/agent.s again (the command is in its header)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a supervisor's settings.sh gives the shell back its values and the app's command, whatever their bytes", () => {
  const tricky = `it's "quoted" $HOME \`x\` \\ ;\nnext line`;
  const settings = supervisorSettings({
    argv: ['/bin/app', tricky, '', '--'],
    env: { PLAIN: 'value', TRICKY: tricky },
    workdir: '/srv/my app',
    uid: 1000,
    gid: 1001,
    port: 8080,
    prelude: '/.alto/prelude.sh',
    hookSettings: { ALTO_VOLUMES: '/data /cache' },
  });
  const dir = mkdtempSync(join(tmpdir(), 'alto-settings-'));
  try {
    writeFileSync(join(dir, 'settings.sh'), settings);
    const shell = hasCommand('busybox') ? ['busybox', 'sh'] : ['sh'];
    const printed = execFileSync(
      shell[0],
      [...shell.slice(1), '-c', `. ${dir}/settings.sh; printf '%s\\0' "$ALTO_WORKDIR" "$ALTO_LISTEN_PATTERN" "$ALTO_UID:$ALTO_GID" "$ALTO_PRELUDE" "$ALTO_EPILOGUE" "$ALTO_VOLUMES" "$@"`],
      { encoding: 'utf8' },
    );
    const launcher = ['/.alto/bin/ld.so', '--library-path', '/.alto/bin/lib', '/.alto/bin/setpriv', '--reuid=1000', '--regid=1001', '--clear-groups', '--'];
    assert.deepEqual(printed.split('\0').slice(0, -1), [
      '/srv/my app',
      ':1F90 [0-9A-F]+:0000 0A',
      '1000:1001',
      '/.alto/prelude.sh',
      '',
      '/data /cache',
      'PLAIN=value',
      `TRICKY=${tricky}`,
      ...launcher,
      '/bin/app',
      tricky,
      '',
      '--',
    ]);
    assert.match(supervisorSettings({ argv: ['x'], env: {}, workdir: '', uid: 0, gid: 0, port: 0 }), /^ALTO_WORKDIR='\/'$\nALTO_LISTEN_PATTERN=''$/m, 'no port: no listener is waited for');
    assert.throws(() => supervisorSettings({ argv: ['x'], env: {}, workdir: '/', uid: 0, gid: 0, port: 0, hookSettings: { ALTO_UID: '5' } }), /ALTO_UID/);
    assert.throws(() => supervisorSettings({ argv: ['x'], env: {}, workdir: '/', uid: 0, gid: 0, port: 0, hookSettings: { 'ALTO_X;rm': '5' } }), /ALTO_X;rm/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the secrets' files reach supervisor.sh as lines it decodes back to the exact bytes, with their modes and owners", () => {
  const value = "line one\nit's \"two\" $HOME `x`\n\u00e9\n";
  const settings = supervisorSettings({
    argv: ['/app'],
    env: { VISIBLE: 'yes' },
    workdir: '/',
    uid: 33,
    gid: 34,
    port: 0,
    secretFiles: [
      { target: 'db_password', mode: 0o400, value },
      { target: 'team.txt', mode: 0o440, uid: 0, gid: 999, value: '' },
    ],
  });
  assert.doesNotMatch(settings, /line one/, 'the value is never written as text the shell reads');
  const dir = mkdtempSync(join(tmpdir(), 'alto-settings-'));
  try {
    writeFileSync(join(dir, 'settings.sh'), settings);
    // The loop supervisor.sh runs, writing into a folder here instead of /run/secrets.
    const script = `. ${dir}/settings.sh; echo "$ALTO_SECRET_FILES" | while read -r name mode owner value; do echo "$value" | busybox base64 -d >"${dir}/$name"; echo "$name $mode $owner"; done; printf '%s\\n' "$@"`;
    const printed = execFileSync('busybox', ['sh', '-c', script], { encoding: 'utf8' });
    assert.deepEqual(printed.split('\n').slice(0, 3), ['db_password 0400 33:34', 'team.txt 0440 0:999', 'VISIBLE=yes'], 'the files are not in the env the app gets');
    assert.equal(readFileSync(join(dir, 'db_password'), 'utf8'), value);
    assert.equal(readFileSync(join(dir, 'team.txt'), 'utf8'), '');
    assert.match(readFileSync(join(GUEST_FILES_DIR, 'supervisor.sh'), 'utf8'), /while read -r name mode owner value; do/, 'supervisor.sh reads the same fields');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const refused = (file: { target: string; mode: number }) => () => supervisorSettings({ argv: ['x'], env: {}, workdir: '/', uid: 0, gid: 0, port: 0, secretFiles: [{ ...file, value: 'v' }] });
  assert.throws(refused({ target: '../etc/passwd', mode: 0o444 }), /is not letters/);
  assert.throws(refused({ target: 'a b', mode: 0o444 }), /is not letters/);
  assert.throws(refused({ target: '..', mode: 0o444 }), /is not letters/);
  assert.throws(refused({ target: 'ok', mode: 0o666 }), /world-writable/);
});

test('stop signals are read as images and users write them, and only those an app may be stopped with', () => {
  for (const [given, name] of [['SIGINT', 'INT'], ['sigquit', 'QUIT'], ['TERM', 'TERM'], ['2', 'INT'], ['15', 'TERM'], [' SIGHUP ', 'HUP']] as const)
    assert.equal(stopSignalName(given), name, given);
  for (const refused of ['SIGSEGV', 'SIGSTOP', 'SIGCHLD', '0', '99', 'INT; rm -rf /', '']) assert.equal(stopSignalName(refused), undefined, refused);
  const settings = (stopSignal?: string, defaultSignals?: boolean) => supervisorSettings({ argv: ['/app'], env: {}, workdir: '/', uid: 0, gid: 0, port: 0, stopSignal, defaultSignals });
  assert.match(settings(), /^ALTO_STOP_SIGNAL='TERM'$/m);
  assert.match(settings('SIGINT'), /^ALTO_STOP_SIGNAL='INT'$/m);
  assert.match(settings('SIGSEGV'), /^ALTO_STOP_SIGNAL='TERM'$/m, 'a signal no app is stopped with falls back to SIGTERM');
  // The app is started through alto-enter --default-signals when the sandbox has it.
  assert.match(settings(undefined, true), /set -- '\/\.alto\/bin\/alto-enter' '--default-signals' '--' '\/\.alto\/bin\/ld\.so'/);
  assert.doesNotMatch(settings(undefined, false), /alto-enter/);
});
