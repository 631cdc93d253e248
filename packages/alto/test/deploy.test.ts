/**
 * The deployment files in deploy/: the Kubernetes DaemonSet parses and passes the Kubernetes
 * API schema (apps/v1 DaemonSet, through kubernetes-models) and has what Alto needs
 * (privileged, host networking, /dev/kvm, its settings from the Secret, every flag `alto up`
 * takes on a node of a cloud); the systemd unit passes `systemd-analyze verify` where that
 * command exists and passes the same flags from its EnvironmentFile; the example environment
 * file sets every variable the unit uses.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { parseAllDocuments } from 'yaml';
import { ALTO_ROOT } from './harness.js';

const DEPLOY = join(ALTO_ROOT, '../../deploy');
/** The flags a node of a cloud is started with (see deploy/README.md). */
const NODE_FLAGS = ['--data', '--store', '--events', '--objects', '--node', '--advertise'];

test('the DaemonSet is one YAML document that passes the Kubernetes apps/v1 schema', () => {
  const documents = parseAllDocuments(readFileSync(join(DEPLOY, 'kubernetes/daemonset.yaml'), 'utf8'));
  assert.equal(documents.length, 1);
  assert.deepEqual(documents[0].errors, []);
  const manifest = documents[0].toJS();
  assert.equal(manifest.apiVersion, 'apps/v1');
  assert.equal(manifest.kind, 'DaemonSet');
  new DaemonSet(manifest).validate();
  // The schema check catches wrong types and missing fields (not misspelt field names).
  const broken = structuredClone(manifest);
  broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
  assert.throws(() => new DaemonSet(broken).validate(), /containerPort must be integer/);
});

test('the DaemonSet runs Alto privileged on the host network with /dev/kvm, its data on the host, its settings from the Secret', () => {
  const manifest = parseAllDocuments(readFileSync(join(DEPLOY, 'kubernetes/daemonset.yaml'), 'utf8'))[0].toJS();
  const pod = manifest.spec.template.spec;
  assert.deepEqual(manifest.spec.selector.matchLabels, manifest.spec.template.metadata.labels);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'cluster DNS still resolves on the host network');
  assert.equal(pod.containers.length, 1);
  const [alto] = pod.containers;
  assert.equal(alto.securityContext.privileged, true);
  assert.deepEqual(alto.command.slice(-2), ['/opt/alto/packages/alto/bin/alto.js', 'up']);

  const volumes = new Map<string, any>(pod.volumes.map((volume: any) => [volume.name, volume]));
  const mounts = new Map<string, string>(alto.volumeMounts.map((mount: any) => [mount.mountPath, mount.name]));
  for (const name of mounts.values()) assert.ok(volumes.has(name), `the volume ${name} is declared`);
  assert.deepEqual(volumes.get(mounts.get('/dev/kvm')!)?.hostPath, { path: '/dev/kvm', type: 'CharDevice' });
  assert.equal(volumes.get(mounts.get('/var/lib/alto')!)?.hostPath?.path, '/var/lib/alto', 'node-local data stays on the host');

  assert.deepEqual(alto.envFrom, [{ secretRef: { name: 'alto' } }]);
  const args: string[] = alto.args;
  for (const flag of NODE_FLAGS) assert.ok(args.includes(flag), `${flag} is passed`);
  const valueOf = (flag: string) => args[args.indexOf(flag) + 1];
  assert.equal(valueOf('--data'), '/var/lib/alto');
  // $(VAR) takes a variable of the container: the Secret's (documented in its header) or env's.
  const fromEnv = new Set(alto.env.map((variable: any) => variable.name));
  for (const [flag, variable] of [['--store', 'ALTO_STORE'], ['--events', 'ALTO_EVENTS'], ['--objects', 'ALTO_OBJECTS']]) {
    assert.equal(valueOf(flag), `$(${variable})`);
  }
  assert.equal(valueOf('--node'), '$(NODE_NAME)');
  assert.ok(fromEnv.has('NODE_NAME') && fromEnv.has('HOST_IP'));
  const port = Number(valueOf('--port'));
  assert.equal(valueOf('--advertise'), `http://$(HOST_IP):${port}`);
  assert.deepEqual([alto.ports[0].containerPort, alto.ports[0].hostPort], [port, port], 'on the host network the ports are one');
  assert.equal(alto.livenessProbe.httpGet.path, '/livez');
  assert.equal(alto.readinessProbe.httpGet.path, '/readyz');
});

test('the systemd unit passes every node flag from its EnvironmentFile, and the example file sets them all', () => {
  const unit = readFileSync(join(DEPLOY, 'systemd/alto.service'), 'utf8');
  const line = (key: string) => unit.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1];
  assert.equal(line('EnvironmentFile'), '/etc/alto/alto.env');
  assert.equal(line('Restart'), 'on-failure');
  assert.equal(line('User'), 'root', 'the sandbox drivers need root');
  assert.match(line('LimitNOFILE') ?? '', /^\d+$/);
  const execStart = unit.match(/^ExecStart=((?:.*\\\n)*.*)$/m)![1].replace(/\\\n\s*/g, ' ');
  const words = execStart.split(/\s+/);
  assert.deepEqual(words.slice(0, 3), ['/usr/bin/node', '/opt/alto/packages/alto/bin/alto.js', 'up']);
  for (const flag of NODE_FLAGS) assert.ok(words.includes(flag), `${flag} is passed`);
  const used = [...execStart.matchAll(/\$\{(\w+)\}/g)].map((match) => match[1]);
  assert.ok(used.length >= 5);
  const example = readFileSync(join(DEPLOY, 'alto.env.example'), 'utf8');
  const set = new Set([...example.matchAll(/^(\w+)=/gm)].map((match) => match[1]));
  for (const variable of [...used, 'ALTO_MASTER_KEY', 'ALTO_ADMIN_KEY']) assert.ok(set.has(variable), `alto.env.example sets ${variable}`);
});

test('the systemd unit passes systemd-analyze verify', (t) => {
  if (spawnSync('systemd-analyze', ['--version']).error) {
    t.skip('systemd-analyze is not installed here: the unit was not verified by systemd');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'alto-unit-'));
  try {
    const path = join(dir, 'alto.service');
    copyFileSync(join(DEPLOY, 'systemd/alto.service'), path);
    const verified = spawnSync('systemd-analyze', ['verify', '--man=no', path], { encoding: 'utf8' });
    assert.equal(verified.status, 0, verified.stderr);
    // Unknown keys and bad values are only warnings on stderr, naming the file.
    const warnings = verified.stderr.split('\n').filter((line) => line.includes('alto.service'));
    assert.deepEqual(warnings, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
