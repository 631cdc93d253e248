import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AltoError } from '../../kit/errors.js';
import { BuildContext } from './context.js';
import { expandWord, expandWords, keyValuePairs, parseDockerfile } from './dockerfile.js';

const refusedWith = (pattern: RegExp) => (error: unknown) => error instanceof AltoError && error.status === 400 && pattern.test(error.detail);

test('a multi-stage Dockerfile reads into stages with their lines, flags, forms and heredocs', () => {
  const parsed = parseDockerfile(`# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM --platform=linux/amd64 \${BASE} AS build
RUN echo one && \\
    echo two
RUN ["/bin/sh", "-c", "echo exec form"]
RUN <<EOF
echo from a heredoc
EOF
FROM build
COPY --from=build --chown=33:33 --chmod=755 /out/a /out/b /dst/
CMD ["httpd", "-f"]
`);
  assert.deepEqual(parsed.globalArgs.map((arg) => arg.args), [[{ name: 'BASE', value: 'busybox' }]]);
  assert.equal(parsed.stages.length, 2);
  const [build, final] = parsed.stages;
  assert.equal(build.alias, 'build');
  assert.equal(build.from.line, 3);
  const [shell, exec, heredoc] = build.instructions;
  assert.equal(shell.kind, 'RUN');
  assert.deepEqual(shell.kind === 'RUN' && shell.command, { shell: 'echo one &&     echo two' });
  assert.deepEqual(exec.kind === 'RUN' && exec.command, { exec: ['/bin/sh', '-c', 'echo exec form'] });
  assert.equal(heredoc.line, 7);
  assert.deepEqual(heredoc.kind === 'RUN' && heredoc.heredocs, [{ name: 'EOF', content: 'echo from a heredoc\n' }]);
  assert.equal(final.from.image, 'build');
  const copy = final.instructions[0];
  assert.ok(copy.kind === 'COPY');
  assert.deepEqual([copy.sources, copy.destination, copy.from, copy.chown, copy.chmod], [['/out/a', '/out/b'], '/dst/', 'build', '33:33', '755']);
});

test('what Alto cannot build is a 400 naming the line', () => {
  assert.throws(() => parseDockerfile('FROM busybox\nMAINTAINER someone\n'), refusedWith(/^Dockerfile line 2: MAINTAINER is not supported/));
  assert.throws(() => parseDockerfile('FROM busybox\nONBUILD RUN make\n'), refusedWith(/^Dockerfile line 2: ONBUILD is not supported/));
  assert.throws(() => parseDockerfile('FROM busybox\n\nRUN --mount=type=cache,target=/c make\n'), refusedWith(/^Dockerfile line 3: RUN --mount is not supported/));
  assert.throws(() => parseDockerfile('FROM busybox\nCOPY --link a /a\n'), refusedWith(/^Dockerfile line 2: COPY --link is not supported/));
  assert.throws(() => parseDockerfile('FROM --platform=linux/arm64 busybox\n'), refusedWith(/^Dockerfile line 1: FROM --platform=linux\/arm64/));
  assert.throws(() => parseDockerfile('RUN echo\nFROM busybox\n'), refusedWith(/^Dockerfile line 1: RUN before the first FROM/));
  assert.throws(() => parseDockerfile('# just a comment\n'), refusedWith(/no FROM/));
  assert.throws(() => parseDockerfile('FROM a AS x\nFROM b AS x\n'), refusedWith(/line 2: the stage name "x" is used twice/));
});

test('words expand ARG and ENV values as Docker does, quotes and escapes included', () => {
  const env = new Map([
    ['NAME', 'alto'],
    ['EMPTY', ''],
  ]);
  assert.equal(expandWord('$NAME-${NAME}', env, 1), 'alto-alto');
  assert.equal(expandWord('${MISSING:-fallback} ${EMPTY:-empty} ${EMPTY-set}', env, 1), 'fallback empty ');
  assert.equal(expandWord('${NAME:+yes}${MISSING:+no}', env, 1), 'yes');
  assert.deepEqual(expandWords(`'$NAME' "$NAME two" \\$NAME`, env, 1), ['$NAME', 'alto two', '$NAME']);
  assert.deepEqual(keyValuePairs('A=1 B="two words" C=$NAME', env, 1, 'ENV'), [['A', '1'], ['B', 'two words'], ['C', 'alto']]);
  assert.deepEqual(keyValuePairs('OLD style value', env, 1, 'ENV'), [['OLD', 'style value']]);
});

test('the build context honours .dockerignore and refuses what leaves it', () => {
  const root = mkdtempSync(join(tmpdir(), 'alto-context-'));
  try {
    mkdirSync(join(root, 'src', 'deep'), { recursive: true });
    mkdirSync(join(root, 'logs'));
    writeFileSync(join(root, 'src', 'a.ts'), 'a');
    writeFileSync(join(root, 'src', 'deep', 'b.ts'), 'b');
    writeFileSync(join(root, 'src', 'deep', 'keep.md'), 'keep');
    writeFileSync(join(root, 'logs', 'x.log'), 'x');
    writeFileSync(join(root, '.dockerignore'), '# comment\nlogs\n**/*.md\n!src/deep/keep.md\n');
    const context = new BuildContext(root);
    assert.deepEqual(context.paths.filter((path) => !path.startsWith('.')), ['src', 'src/a.ts', 'src/deep', 'src/deep/b.ts', 'src/deep/keep.md']);
    assert.deepEqual(context.resolveSource('src/*.ts', (detail) => new Error(detail)), ['src/a.ts']);
    assert.deepEqual(context.resolveSource('/src/deep/', (detail) => new Error(detail)), ['src/deep']);
    assert.throws(() => context.resolveSource('../etc/passwd', (detail) => new Error(detail)), /outside the build context/);
    assert.throws(() => context.resolveSource('src/../../x', (detail) => new Error(detail)), /outside the build context/);
    assert.throws(() => context.resolveSource('logs/x.log', (detail) => new Error(detail)), /\.dockerignore leaves it out/);

    symlinkSync('../../outside', join(root, 'src', 'escape'));
    assert.throws(() => new BuildContext(root), refusedWith(/symlink src\/escape points outside the context/));
    rmSync(join(root, 'src', 'escape'));
    symlinkSync('/etc/passwd', join(root, 'src', 'absolute'));
    assert.throws(() => new BuildContext(root), refusedWith(/symlink src\/absolute points outside the context/));
    rmSync(join(root, 'src', 'absolute'));
    symlinkSync('../a.ts', join(root, 'src', 'deep', 'inside'));
    assert.ok(new BuildContext(root).paths.includes('src/deep/inside'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
