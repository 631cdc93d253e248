/**
 * @module compute/templates/compose.test
 * Reading a template's compose.yaml and alto.yaml into a plan: the plan a usual stack gives,
 * interpolation, parameters, and every refusal and warning naming its service, key and line.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAltoError } from '../../kit/errors.js';
import { planStack, type TemplateSource } from './compose.js';

/** The error message planStack throws for a template; fails the test when it does not throw. */
function problemsOf(source: TemplateSource, values?: Record<string, string>): string {
  try {
    planStack(source, values);
  } catch (error) {
    assert.ok(isAltoError(error), String(error));
    assert.equal(error.status, 400);
    assert.match(error.detail, /^the template is not valid: /);
    return error.detail;
  }
  assert.fail('the template was accepted');
}

/** A one-service compose.yaml with `lines` added under the service `app` (indented four spaces). */
function oneService(...lines: string[]): string {
  return ['services:', '  app:', '    image: nginx', ...lines.map((line) => `    ${line}`), 'volumes:', '  data:', ''].join('\n');
}

const twoServices = `services:
  db:
    image: postgres:16
    environment:
      - POSTGRES_USER=app
      - POSTGRES_DB=app
    volumes:
      - pgdata:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app"]
      interval: 5s
      timeout: 3s
      retries: 5
      start_period: 1m30s
  web:
    build: ./web
    ports:
      - "80:3000"
    environment:
      DATABASE_URL: postgres://app@db/app
      NODE_ENV: production
    depends_on:
      db:
        condition: service_healthy
volumes:
  pgdata:
`;

describe('a usual stack', () => {
  test('a database and a web service give the exact plan, the database first', () => {
    // web comes first in the file to show the order follows depends_on.
    const webFirst = twoServices.replace(/services:\n([\s\S]*?)(  web:[\s\S]*?)volumes:\n  pgdata:/, 'services:\n$2$1volumes:\n  pgdata:');
    assert.ok(webFirst.indexOf('web:') < webFirst.indexOf('db:'));
    const plan = planStack({ compose: webFirst });
    assert.deepEqual(plan, {
      services: [
        {
          name: 'db',
          image: 'postgres:16',
          environment: { POSTGRES_USER: 'app', POSTGRES_DB: 'app' },
          volumes: [{ name: 'pgdata', path: '/var/lib/postgresql/data' }],
          dependsOn: [],
          healthcheck: { test: ['/bin/sh', '-c', 'pg_isready -U app'], intervalSeconds: 5, timeoutSeconds: 3, retries: 5, startPeriodSeconds: 90 },
          replicas: 1,
          restart: 'no',
          secrets: [],
          extensions: {},
        },
        {
          name: 'web',
          build: { context: 'web', args: {} },
          environment: { DATABASE_URL: 'postgres://app@db/app', NODE_ENV: 'production' },
          port: 3000,
          protocol: 'http',
          volumes: [],
          dependsOn: [{ service: 'db', condition: 'service_healthy' }],
          replicas: 1,
          restart: 'no',
          secrets: [],
          extensions: {},
        },
      ],
      parameters: [],
      public: { service: 'web' },
      values: {},
      secrets: [],
      warnings: [],
    });
  });

  test('other services with a port are tcp; alto.yaml picks the public service, its domain and protocols', () => {
    const compose = `services:
  cache:
    image: redis
    expose: ["6379"]
  api:
    image: api
    expose: [8080]
  site:
    image: site
    ports: ["127.0.0.1:8000:80/tcp"]
`;
    const plan = planStack({ compose, alto: 'public: api\ndomain: Shop.Example.com\nservices:\n  site:\n    protocol: http\n' });
    assert.deepEqual(plan.public, { service: 'api', domain: 'shop.example.com' });
    assert.deepEqual(plan.services.map((service) => [service.name, service.port, service.protocol]), [
      ['cache', 6379, 'tcp'],
      ['api', 8080, 'http'],
      ['site', 80, 'http'],
    ]);
    assert.equal(planStack({ compose }).public?.service, 'site', 'the first service with ports');
  });

  test('command, entrypoint, build map, deploy limits, restart, secrets and x-alto', () => {
    const compose = `services:
  worker:
    build:
      context: ./src/../worker
      dockerfile: docker/Dockerfile
      args: [VERSION=2]
    entrypoint: /bin/run "--name=a b" 'x y'
    command: [serve, --port, "9000"]
    restart: unless-stopped
    secrets: [token, {source: key, target: /run/secrets/api.key, mode: 0440}]
    deploy:
      replicas: 3
      resources:
        limits: {memory: 512m, cpus: "0.5"}
    x-alto: {size: small, tags: [a]}
    x-other: ignored
secrets:
  token: {file: ./token}
  key: {environment: KEY}
`;
    const plan = planStack({ compose, readFile: (path) => (path === 'token' ? 'abc\n' : undefined) }, { KEY: 'k-value' });
    const [worker] = plan.services;
    assert.ok(!plan.warnings.some((warning) => /secrets/.test(warning)), plan.warnings.join('\n'));
    assert.deepEqual(worker.build, { context: 'worker', dockerfile: 'docker/Dockerfile', args: { VERSION: '2' } });
    assert.deepEqual(worker.entrypoint, ['/bin/run', '--name=a b', 'x y']);
    assert.deepEqual(worker.command, ['serve', '--port', '9000']);
    assert.equal(worker.restart, 'unless-stopped');
    assert.deepEqual(worker.secrets, [
      { source: 'token', target: 'token', mode: 0o444 },
      { source: 'key', target: 'api.key', mode: 0o440 },
    ]);
    assert.deepEqual(plan.secrets, [
      { name: 'token', file: 'token', value: 'abc\n' },
      { name: 'key', environment: 'KEY', value: 'k-value' },
    ]);
    assert.equal(worker.replicas, 3);
    assert.equal(worker.memoryMiB, 512);
    assert.equal(worker.cpus, 0.5);
    assert.deepEqual(worker.extensions, { size: 'small', tags: ['a'] });
  });

  test('memory sizes in compose byte strings or bytes', () => {
    const memory = (value: string) => planStack({ compose: oneService('deploy:', '  resources:', `    limits: {memory: ${value}}`) }).services[0].memoryMiB;
    assert.equal(memory('512m'), 512);
    assert.equal(memory('1g'), 1024);
    assert.equal(memory('256M'), 256);
    assert.equal(memory('1.5gb'), 1536);
    assert.equal(memory(`"${64 * 1024 * 1024}"`), 64);
    // The specification's memory is a string: bytes as a bare number are refused, as docker compose does.
    assert.match(
      problemsOf({ compose: oneService('deploy:', '  resources:', `    limits: {memory: ${64 * 1024 * 1024}}`) }),
      /line 6: services\.app\.deploy\.resources\.limits\.memory: does not follow the Compose Specification: must be string/,
    );
    assert.match(problemsOf({ compose: oneService('deploy:', '  resources:', '    limits: {memory: lots}') }), /line 6: services\.app\.deploy\.resources\.limits\.memory: "lots" is not a size/);
  });

  test('shm_size is honoured by /dev/shm within the app memory, warned past it, refused when unreadable', () => {
    const plan = (lines: string[]) => planStack({ compose: oneService(...lines) });
    const within = plan(['shm_size: 128mb']);
    assert.equal(within.services[0].shmMiB, 128);
    assert.deepEqual(within.warnings, []);
    assert.deepEqual(plan(['shm_size: 1g', 'deploy: {resources: {limits: {memory: 2g}}}']).warnings, []);
    assert.deepEqual(plan(['shm_size: 1g']).warnings, [
      "compose.yaml line 4: services.app.shm_size: /dev/shm holds at most the app's memory, 256 MiB, not 1024 MiB: raise deploy.resources.limits.memory",
    ]);
    assert.match(problemsOf({ compose: oneService('shm_size: plenty') }), /line 4: services\.app\.shm_size: "plenty" is not a size like 64m or 1g/);
  });

  test('a command line splits like a shell for simple words and quotes', () => {
    const entrypoint = (line: string) => planStack({ compose: oneService(`entrypoint: ${JSON.stringify(line)}`) }).services[0].entrypoint;
    assert.deepEqual(entrypoint(`sh -c 'echo "$$HOME"' "a\\"b" c\\ d ''`), ['sh', '-c', 'echo "$HOME"', 'a"b', 'c d', '']);
    assert.match(problemsOf({ compose: oneService('command: echo "open') }), /line 4: services\.app\.command: unclosed quote/);
  });

  test('merge keys from x- anchors are honoured', () => {
    const compose = `x-common: &common
  restart: always
  environment: {A: "1"}
services:
  one:
    <<: *common
    image: one
    environment: {B: "2"}
`;
    const [one] = planStack({ compose }).services;
    assert.equal(one.restart, 'always');
    assert.deepEqual(one.environment, { B: '2' }, 'an explicit key wins over the merged one');
  });
});

describe('interpolation and parameters', () => {
  const alto = `parameters:
  TAG:
    description: image tag
    default: "16"
  PASSWORD:
    secret: true
    generate: 24
  EMPTY:
    default: ""
`;

  test('${VAR}, $VAR, defaults, alternatives and $$ expand; $(X) stays for the instance', () => {
    const compose = oneService(
      'image: postgres:${TAG}',
      'environment:',
      '  A: $TAG-x',
      '  B: ${MISSING:-fallback}',
      '  C: ${EMPTY:-empty-fallback}',
      '  D: ${EMPTY-kept-empty}',
      '  E: price $$5',
      '  F: http://$(DB_SERVICE_HOST):5432',
      '  G: ${TAG:+has-tag}',
      '  H: ${MISSING:-${TAG}}',
      '  I: ${PORT}',
    );
    const plan = planStack({ compose: compose.replace('    image: nginx\n', ''), alto }, { PORT: '8080' });
    const [app] = plan.services;
    assert.equal(app.image, 'postgres:16');
    assert.deepEqual(app.environment, { A: '16-x', B: 'fallback', C: 'empty-fallback', D: '', E: 'price $5', F: 'http://$(DB_SERVICE_HOST):5432', G: 'has-tag', H: '16', I: '8080' });
  });

  test('a given value wins over a default', () => {
    const plan = planStack({ compose: oneService('environment: ["TAG_IS=${TAG}"]'), alto }, { TAG: '17' });
    assert.equal(plan.services[0].environment.TAG_IS, '17');
    assert.equal(plan.values.TAG, '17');
  });

  test('${VAR:?message} and an unset variable without default are errors naming the place', () => {
    const message = problemsOf({ compose: oneService('environment:', '  KEY: ${API_KEY:?get one at example.com}', '  OTHER: ${NOPE}') });
    assert.match(message, /compose\.yaml line 5: services\.app\.environment\.KEY: API_KEY is required: get one at example\.com/);
    assert.match(message, /compose\.yaml line 6: services\.app\.environment\.OTHER: \$\{NOPE\} is not set: give it with --set NOPE=/);
    assert.match(problemsOf({ compose: oneService('environment: ["X=${EMPTY:?must not be empty}"]'), alto }), /EMPTY is required: must not be empty/);
  });

  test('a generated secret has the asked length and lands in values and the environment', () => {
    const plan = planStack({ compose: oneService('environment:', '  POSTGRES_PASSWORD: ${PASSWORD}'), alto });
    const generated = plan.values.PASSWORD;
    assert.equal(generated.length, 24);
    assert.match(generated, /^[A-Za-z0-9_-]+$/);
    assert.equal(plan.services[0].environment.POSTGRES_PASSWORD, generated);
    assert.deepEqual(plan.parameters, [
      { name: 'TAG', description: 'image tag', default: '16', secret: false },
      { name: 'PASSWORD', secret: true, generate: 24 },
      { name: 'EMPTY', default: '', secret: false },
    ]);
    assert.deepEqual(plan.values, { TAG: '16', PASSWORD: generated, EMPTY: '' });
    const again = planStack({ compose: oneService('environment: ["POSTGRES_PASSWORD=${PASSWORD}"]'), alto });
    assert.notEqual(again.values.PASSWORD, generated, 'a fresh value each time');
    assert.equal(planStack({ compose: oneService(), alto }, { PASSWORD: 'chosen' }).values.PASSWORD, 'chosen');
  });

  test('an environment list entry without = takes the template value, else is an error', () => {
    const plan = planStack({ compose: oneService('environment: [TAG, ROLE]'), alto }, { ROLE: 'admin' });
    assert.deepEqual(plan.services[0].environment, { TAG: '16', ROLE: 'admin' });
    assert.match(problemsOf({ compose: oneService('environment:', '  - UNKNOWN') }), /line 5: services\.app\.environment\[0\]: UNKNOWN has no value/);
  });

  test('--set of a name nothing uses is refused, listing the parameters', () => {
    assert.equal(
      problemsOf({ compose: oneService(), alto }, { FOO: '1' }),
      'the template is not valid: --set FOO: the template has no parameter FOO; its parameters: TAG, PASSWORD, EMPTY',
    );
    assert.match(problemsOf({ compose: oneService() }, { FOO: '1' }), /--set FOO: the template has no parameter FOO; its parameters: \(none\)/);
  });

  test('alto.yaml parameters are checked', () => {
    const message = problemsOf({
      compose: oneService(),
      alto: 'parameters:\n  1BAD: {}\n  BOTH: {default: x, generate: 16}\n  SHORT: {generate: 4}\n  REQUIRED: {description: needed}\n',
    });
    assert.match(message, /alto\.yaml line 2: parameters\.1BAD: a parameter name is letters/);
    assert.match(message, /alto\.yaml line 3: parameters\.BOTH: has both default and generate/);
    assert.match(message, /alto\.yaml line 4: parameters\.SHORT\.generate: must be a number of characters from 8 to 128/);
    assert.match(message, /parameters\.REQUIRED: has no value: give it with --set REQUIRED=/);
  });
});

describe('refusals name the service, key and line', () => {
  const cases: [string, string[], RegExp][] = [
    ['privileged', ['privileged: true'], /compose\.yaml line 4: services\.app\.privileged: privileged: true is refused/],
    ['host network', ['network_mode: host'], /compose\.yaml line 4: services\.app\.network_mode: network_mode: host would share the host's network; every app runs in its own sandbox/],
    ['devices', ['devices: ["/dev/kvm:/dev/kvm"]'], /compose\.yaml line 4: services\.app\.devices: devices is refused/],
    ['cap_add', ['cap_add: [NET_ADMIN]'], /line 4: services\.app\.cap_add: cap_add is refused/],
    ['pid host', ['pid: host'], /line 4: services\.app\.pid: pid: host would share the host's processes/],
    ['ipc host', ['ipc: host'], /line 4: services\.app\.ipc: ipc: host would share the host's shared memory/],
    ['bind mount, short', ['volumes:', '  - ./conf:/etc/conf:ro'], /line 5: services\.app\.volumes\[0\]: bind mount \.\/conf is refused: a template's data lives in named volumes \(volumes: name:\/path\)/],
    ['bind mount, absolute', ['volumes: ["/var/run/docker.sock:/var/run/docker.sock"]'], /line 4: services\.app\.volumes\[0\]: bind mount \/var\/run\/docker\.sock is refused/],
    ['bind mount, home', ['volumes: ["~/x:/x"]'], /bind mount ~\/x is refused/],
    ['bind mount, long', ['volumes:', '  - type: bind', '    source: /srv', '    target: /srv'], /line 5: services\.app\.volumes\[0\]: bind mount \/srv is refused: a template's data lives in named volumes/],
    ['tmpfs volume', ['volumes:', '  - {type: tmpfs, target: /cache}'], /line 5: services\.app\.volumes\[0\]: tmpfs mount \/cache is refused/],
    ['tmpfs key', ['tmpfs: /run'], /line 4: services\.app\.tmpfs: tmpfs is refused/],
    ['undeclared volume', ['volumes: ["other:/data"]'], /line 4: services\.app\.volumes\[0\]: volume other is not declared under the top-level volumes/],
    ['anonymous volume', ['volumes: ["/data"]'], /anonymous volume \/data is refused/],
    ['udp port', ['ports: ["53:53/udp"]'], /line 4: services\.app\.ports\[0\]: udp ports are refused/],
    ['port range', ['ports: ["8000-8010"]'], /port range 8000-8010 is refused/],
    ['bad restart', ['restart: sometimes'], /line 4: services\.app\.restart: must be no, always, on-failure or unless-stopped/],
    ['bad condition', ['depends_on: {app: {condition: soon}}'], /services\.app\.depends_on\.app\.condition: must be one of/],
  ];
  for (const [name, lines, expected] of cases) {
    test(name, () => assert.match(problemsOf({ compose: oneService(...lines) }), expected));
  }

  test('all problems come at once', () => {
    const message = problemsOf({ compose: oneService('volumes: ["/:/host"]', 'cap_add: [ALL]', 'privileged: true') }, { UNUSED: '1' });
    assert.match(message, /: compose\.yaml line 4: services\.app\.volumes\[0\]: bind mount \/ is refused: .*; compose\.yaml line 5: services\.app\.cap_add: .*; compose\.yaml line 6: services\.app\.privileged: .*; --set UNUSED: /);
  });

  test('a service needs image or build, and a name Alto can use', () => {
    const message = problemsOf({ compose: 'services:\n  web:\n    command: [run]\n  Web_2:\n    image: x\n' });
    assert.match(message, /compose\.yaml line 2: services\.web: needs image or build/);
    assert.match(message, /compose\.yaml line 4: services\.Web_2: a service name is 1-30 lower-case letters, digits and dashes, .*compose allows more/);
  });

  test('a build context outside the template folder is refused', () => {
    assert.match(problemsOf({ compose: 'services:\n  web:\n    build: ../x\n' }), /line 3: services\.web\.build: build context \.\.\/x is refused/);
    assert.match(problemsOf({ compose: 'services:\n  web:\n    build: {context: ./a/../../x}\n' }), /build context \.\/a\/\.\.\/\.\.\/x is refused/);
    assert.match(problemsOf({ compose: 'services:\n  web:\n    build: /abs\n' }), /build context \/abs is refused/);
  });

  test('depends_on must name services and must not form a cycle', () => {
    const cycle = `services:
  a:
    image: a
    depends_on: [c]
  b:
    image: b
    depends_on: [a]
  c:
    image: c
    depends_on:
      b: {condition: service_started}
  d:
    image: d
    depends_on: [nobody]
`;
    const message = problemsOf({ compose: cycle });
    assert.match(message, /compose\.yaml line 4: services\.a\.depends_on: services depend on each other in a cycle: a -> c -> b -> a/);
    assert.match(message, /compose\.yaml line 14: services\.d\.depends_on: no service named nobody/);
  });

  test('services are bounded: at least one, at most 20', () => {
    assert.match(problemsOf({ compose: 'services: {}\n' }), /line 1: services: a template has 1 to 20 services, not 0/);
    const many = 'services:\n' + Array.from({ length: 21 }, (_, index) => `  s${index}:\n    image: x\n`).join('');
    assert.match(problemsOf({ compose: many }), /a template has 1 to 20 services, not 21/);
    assert.match(problemsOf({ compose: 'name: x\n' }), /services: compose\.yaml needs a services map/);
  });

  test('texts are bounded', () => {
    assert.match(problemsOf({ compose: `# ${'x'.repeat(256 * 1024)}\n` }), /compose\.yaml is larger than 256 KiB/);
    assert.match(problemsOf({ compose: oneService(), alto: `# ${'x'.repeat(64 * 1024)}\n` }), /alto\.yaml is larger than 64 KiB/);
  });

  test('a YAML syntax error names the file and line', () => {
    assert.match(problemsOf({ compose: 'services:\n  web:\n    image: x\n    ports: [80\n' }), /^the template is not valid: compose\.yaml line \d+: YAML syntax: /);
    assert.match(problemsOf({ compose: 'services:\n  web:\n    image: x: y\n' }), /compose\.yaml line 3: YAML syntax: Nested mappings/);
    assert.match(problemsOf({ compose: 'services:\n  web:\n    image: x\n   bad: 1\n' }), /compose\.yaml line 4: YAML syntax: All mapping items must start at the same column/);
    assert.match(problemsOf({ compose: oneService(), alto: 'public: app\ndomain: a: b\n' }), /alto\.yaml line 2: YAML syntax/);
  });

  test('alto.yaml must name existing services', () => {
    const message = problemsOf({ compose: oneService(), alto: 'public: nope\nservices:\n  app: {protocol: udp}\n' });
    assert.match(message, /alto\.yaml line 1: public: compose\.yaml has no service nope/);
    assert.match(message, /alto\.yaml line 3: services\.app\.protocol: must be http or tcp, not "udp"/);
  });
});

describe('env_file', () => {
  const files: Record<string, string> = {
    'web.env': '# settings\n\nMODE=prod\nexport QUOTED="a b"\nLITERAL=\'$NOT\'\nTAG=${TAG:-none}\nKEPT=from-file\n',
  };
  const readFile = (path: string) => files[path];

  test('files are read through readFile and merged under environment', () => {
    const plan = planStack({ compose: oneService('env_file: ./web.env', 'environment: {KEPT: from-compose}'), readFile });
    assert.deepEqual(plan.services[0].environment, { MODE: 'prod', QUOTED: 'a b', LITERAL: '$NOT', TAG: 'none', KEPT: 'from-compose' });
  });

  test('a missing file, a path outside the folder and a bad line are reported', () => {
    assert.match(problemsOf({ compose: oneService('env_file: [web.env, other.env]'), readFile }), /line 4: services\.app\.env_file\[1\]: env_file other\.env is missing from the template folder/);
    assert.match(problemsOf({ compose: oneService('env_file: ../secrets.env'), readFile }), /env_file \.\.\/secrets\.env must be a file inside the template folder/);
    assert.match(problemsOf({ compose: oneService('env_file: bad.env'), readFile: () => 'GOOD=1\nnot a line\n' }), /services\.app\.env_file \(bad\.env line 2\): "not a line" is not NAME=VALUE/);
    assert.deepEqual(planStack({ compose: oneService('env_file: [{path: opt.env, required: false}]'), readFile }).services[0].environment, {});
  });
});

describe('the Compose Specification schema', () => {
  test('a value of the wrong shape is refused with its key path and line, after interpolation', () => {
    const detail = problemsOf({ compose: oneService('labels: 5', 'container_name: [a, b]', 'deploy:', '  replicas: ${REPLICAS}') }, { REPLICAS: '2' });
    assert.match(detail, /compose\.yaml line 4: services\.app\.labels: does not follow the Compose Specification: must be object, or must be array/);
    assert.match(detail, /compose\.yaml line 5: services\.app\.container_name: does not follow the Compose Specification: must be string/);
    // ${REPLICAS} read as the number it interpolates to: no problem there.
    assert.doesNotMatch(detail, /replicas/);
  });

  test('what the reader reports itself is said once, unknown keys stay warnings, and later forms of the specification pass', () => {
    const detail = problemsOf({ compose: oneService('deploy:', '  replicas: many') });
    assert.equal(detail.match(/services\.app\.deploy\.replicas/g)?.length, 1, detail);
    const plan = planStack({
      compose: oneService('mem_swappiness: 10', 'env_file: [{path: ./app.env, required: false}]', 'deploy: {replicas: "2"}'),
      readFile: () => undefined,
    });
    assert.deepEqual(plan.warnings, ['compose.yaml line 4: services.app.mem_swappiness: unknown service key, ignored']);
  });
});

describe('warnings', () => {
  test('unknown and ignored keys are warned about with their line', () => {
    const compose = `version: "3.9"
x-notes: anything
services:
  app:
    image: nginx
    container_name: my-nginx
    mem_swappiness: 10
    extra_hosts: ["a:1.2.3.4"]
    deploy:
      placement: {constraints: []}
networks:
  back: {}
configs:
  c: {file: ./c}
`;
    const plan = planStack({ compose, alto: 'colour: blue\n' });
    assert.deepEqual(plan.warnings, [
      'compose.yaml line 6: services.app.container_name: ignored: Alto names the app after the service',
      'compose.yaml line 7: services.app.mem_swappiness: unknown service key, ignored',
      'compose.yaml line 8: services.app.extra_hosts: ignored: host entries are not added',
      'compose.yaml line 10: services.app.deploy.placement: ignored: only deploy.replicas and deploy.resources.limits are honoured',
      'compose.yaml line 11: networks: ignored: a service reaches the services it depends on or names (host:port or their link variables) through links',
      'compose.yaml line 13: configs: unknown top-level key, ignored',
      'alto.yaml line 1: colour: unknown key, ignored (known: description, parameters, public, domain, services)',
    ]);
  });
});

describe('stop settings', () => {
  test('stop_signal and stop_grace_period are read; a grace period that is no duration is refused', () => {
    const plan = planStack({ compose: 'services:\n  db:\n    image: postgres\n    stop_signal: SIGINT\n    stop_grace_period: 1m30s\n' });
    assert.deepEqual([plan.services[0].stopSignal, plan.services[0].stopGraceSeconds], ['SIGINT', 90]);
    assert.throws(() => planStack({ compose: 'services:\n  db:\n    image: postgres\n    stop_grace_period: soon\n' }), /line 4: services\.db\.stop_grace_period: must be a duration/);
  });
});


describe('secrets', () => {
  /** compose.yaml with one service using `uses` (YAML flow) and the top-level secrets `declared` (lines under secrets:). */
  const withSecrets = (uses: string, ...declared: string[]) => ['services:', '  app:', '    image: nginx', `    secrets: ${uses}`, 'secrets:', ...declared.map((line) => `  ${line}`), ''].join('\n');
  const files: Record<string, Buffer> = {
    'certs/key.pem': Buffer.from('-----BEGIN KEY-----\nsecret\n'),
    'big.bin': Buffer.alloc(64 * 1024 + 1, 0x61),
    'binary.bin': Buffer.from([0xff, 0xfe, 0x00, 0x80]),
  };
  const readBytes = (path: string) => files[path];

  test('file, environment and external secrets, short and long form, with modes and owners', () => {
    const compose = withSecrets(
      '[key, {source: pass, target: db_password, mode: 0400, uid: "999", gid: "999"}, {source: shared, mode: 288}]',
      'key: {file: ./certs/../certs/key.pem}',
      'pass: {environment: DB_PASS}',
      'shared: {external: true, name: team-api-key}',
    );
    const plan = planStack({ compose, readBytes }, { DB_PASS: 'hunter22' });
    assert.deepEqual(plan.secrets, [
      { name: 'key', file: 'certs/key.pem', value: '-----BEGIN KEY-----\nsecret\n' },
      { name: 'pass', environment: 'DB_PASS', value: 'hunter22' },
      { name: 'shared', external: 'team-api-key' },
    ]);
    assert.deepEqual(plan.services[0].secrets, [
      { source: 'key', target: 'key', mode: 0o444 },
      { source: 'pass', target: 'db_password', mode: 0o400, uid: 999, gid: 999 },
      { source: 'shared', target: 'shared', mode: 288 },
    ]);
    // An external secret without name: is the project's secret of the compose name.
    assert.deepEqual(planStack({ compose: withSecrets('[api]', 'api: {external: true}') }).secrets, [{ name: 'api', external: 'api' }]);
    // A parameter of alto.yaml is a variable too.
    const fromParameter = planStack({ compose: withSecrets('[pass]', 'pass: {environment: PASSWORD}'), alto: 'parameters:\n  PASSWORD: {default: p4ssw0rd}\n' });
    assert.deepEqual(fromParameter.secrets, [{ name: 'pass', environment: 'PASSWORD', value: 'p4ssw0rd' }]);
  });

  test('bad files, missing variables and names, and targets outside /run/secrets are refused with their key and line', () => {
    const problems = problemsOf(
      {
        compose: withSecrets(
          '[nope, {target: x}, {source: out, target: /etc/passwd}, {source: wide, mode: 0666}, {source: big}]',
          'out: {file: ../outside.txt}',
          'abs: {file: /etc/shadow}',
          'gone: {file: ./missing.txt}',
          'big: {file: big.bin}',
          'bin: {file: binary.bin}',
          'unset: {environment: NOT_GIVEN}',
          'none: {}',
          'both: {file: ./certs/key.pem, environment: X}',
          'wide: {external: true, file: x}',
        ),
        readBytes,
      },
      {},
    );
    for (const expected of [
      /compose\.yaml line 4: services\.app\.secrets\[0\]: secret nope is not declared under the top-level secrets/,
      /compose\.yaml line 4: services\.app\.secrets\[1\]: needs source/,
      /compose\.yaml line 4: services\.app\.secrets\[2\]\.target: \/etc\/passwd is refused: a secret's file is \/run\/secrets\/<name>/,
      /compose\.yaml line 4: services\.app\.secrets\[3\]\.mode: 0666 would make the secret's file world-writable/,
      /compose\.yaml line 6: secrets\.out\.file: secret file \.\.\/outside\.txt must be a file inside the template folder/,
      /compose\.yaml line 7: secrets\.abs\.file: secret file \/etc\/shadow must be a file inside the template folder/,
      /compose\.yaml line 8: secrets\.gone\.file: secret file \.\/missing\.txt is missing from the template folder/,
      /compose\.yaml line 9: secrets\.big\.file: secret file big\.bin is larger than 64 KiB/,
      /compose\.yaml line 10: secrets\.bin\.file: secret file binary\.bin is not UTF-8 text/,
      /compose\.yaml line 11: secrets\.unset\.environment: NOT_GIVEN is not set: give it with --set NOT_GIVEN=\.\.\./,
      /compose\.yaml line 12: secrets\.none: needs file .*, environment .* or external: true/,
      /compose\.yaml line 13: secrets\.both: has both file and environment/,
      /compose\.yaml line 14: secrets\.wide: an external secret has no file/,
    ])
      assert.match(problems, expected);
  });

  test('a target given twice, a bad external name and a bad mode are refused', () => {
    assert.match(problemsOf({ compose: withSecrets('[a, {source: b, target: a}]', 'a: {external: true}', 'b: {external: true}') }), /line 4: services\.app\.secrets\[1\]: \/run\/secrets\/a is given twice/);
    assert.match(problemsOf({ compose: withSecrets('[a]', 'a: {external: true, name: "no/slash"}') }), /line 6: secrets\.a\.name: "no\/slash" is not a secret's key/);
    assert.match(problemsOf({ compose: withSecrets('[{source: a, mode: 0999}]', 'a: {external: true}') }), /line 4: services\.app\.secrets\[0\]\.mode: "0999" is not a file mode/);
    assert.match(problemsOf({ compose: withSecrets('[{source: a, uid: root}]', 'a: {external: true}') }), /line 4: services\.app\.secrets\[0\]\.uid: "root" is not a numeric uid/);
  });
});
