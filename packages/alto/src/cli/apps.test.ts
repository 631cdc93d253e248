/**
 * `alto deploy --secret-file` specs: NAME, NAME:TARGET and NAME:TARGET:MODE become app/Run's
 * `secret_files`, and a spec the server would refuse is refused here, named, before any call.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printBuildLog, secretFiles } from './apps.js';

test('a secret file spec is NAME, NAME:TARGET or NAME:TARGET:MODE, the mode in octal', () => {
  assert.equal(secretFiles(undefined), undefined);
  assert.equal(secretFiles([]), undefined);
  assert.deepEqual(secretFiles(['db-password']), [{ secret: 'db-password', target: 'db-password' }]);
  assert.deepEqual(secretFiles(['db-password:db_password']), [{ secret: 'db-password', target: 'db_password' }]);
  assert.deepEqual(secretFiles(['db-password:db_password:0400', 'team:team.txt:440', 'tls.key:key.pem:0o640']), [
    { secret: 'db-password', target: 'db_password', mode: 0o400 },
    { secret: 'team', target: 'team.txt', mode: 0o440 },
    { secret: 'tls.key', target: 'key.pem', mode: 0o640 },
  ]);
  // As many as the server takes.
  assert.equal(secretFiles(Array.from({ length: 32 }, (_, index) => `s${index}`))!.length, 32);
});

test('a bad secret file spec is refused naming it and what is wrong', () => {
  const refused = (specs: string[], message: RegExp) => assert.throws(() => secretFiles(specs), (error: Error) => (assert.match(error.message, message), true));
  refused(['a:b:0400:x'], /--secret-file takes NAME, NAME:TARGET or NAME:TARGET:MODE, such as db-password:db_password:0400, not "a:b:0400:x"/);
  refused(['db:db:rw'], /--secret-file "db:db:rw": MODE is permission bits in octal, such as 0400 or 0440, not "rw"/);
  refused(['db:db:0800'], /--secret-file "db:db:0800": MODE is permission bits in octal/);
  refused(['db:db:4755'], /--secret-file "db:db:4755": MODE is permission bits in octal/);
  refused(['db:db:0777'], /--secret-file "db:db:0777": secret_files\.mode: permission bits up to 0775/);
  refused(['db:db:0446'], /--secret-file "db:db:0446": secret_files\.mode: a secret file is never world-writable/);
  refused(['db:/run/secrets/db'], /--secret-file "db:\/run\/secrets\/db": secret_files\.target: a file name of letters, digits and \._-/);
  refused(['db:..'], /--secret-file "db:\.\.": secret_files\.target/);
  refused(['db:'], /--secret-file "db:": secret_files\.target/);
  refused([':db'], /--secret-file ":db": secret_files\.secret: the key of a secret/);
  refused(['my secret'], /--secret-file "my secret": secret_files\.secret/);
  refused(['db:password', 'other:password:0400'], /--secret-file "other:password:0400": \/run\/secrets\/password is already the file of --secret-file "db:password"/);
  refused(['db', 'db'], /--secret-file "db": \/run\/secrets\/db is already the file of --secret-file "db"/);
  refused(Array.from({ length: 33 }, (_, index) => `s${index}`), /--secret-file: at most 32 files, not 33/);
});

test('a build log whose stream dropped is printed again from where it stopped, each line once', async () => {
  const log = ['[build 1/3] FROM busybox', '[build 2/3] RUN make', '  | made', 'built registry/app@sha256:1'];
  /** The server's BuildLogs: the first stream drops after two lines, a later one replays the kept log. */
  let streams = 0;
  const transport = {
    stream<T>(service: string, endpoint: string, request: Record<string, unknown>): AsyncGenerator<T> {
      assert.deepEqual([service, endpoint, request], ['app', 'BuildLogs', { build_id: 'b1' }]);
      const dropAfter = streams++ === 0 ? 2 : Infinity;
      return (async function* () {
        for (const [i, line] of log.entries()) {
          if (i === dropAfter) throw new Error('the connection closed');
          yield { line, ...(i === log.length - 1 ? { done: 'succeeded' } : {}) } as T;
        }
      })();
    },
  } as unknown as Parameters<typeof printBuildLog>[0];
  const written: string[] = [];
  const write = (text: string) => void written.push(text);
  const first = await printBuildLog(transport, 'b1', new AbortController().signal, 0, write);
  assert.deepEqual(first, { lines: 2, ended: false });
  const rest = await printBuildLog(transport, 'b1', new AbortController().signal, first.lines, write);
  assert.deepEqual(rest, { lines: 4, ended: true });
  assert.equal(written.length, 4);
  assert.ok(written.every((text, i) => text.includes(log[i])), written.join(''));
});
