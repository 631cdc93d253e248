/**
 * @module cli/up
 * `alto up`: runs the whole platform in the foreground until Ctrl-C or SIGTERM, then stops
 * cleanly (calls in flight finish, metering is flushed, the database is closed). Once it listens
 * it joins the cloud its store names as a node (`--node`, `--advertise`; compute/cluster) and
 * heartbeats until it stops, when it marks itself gone.
 */
import { createLogger } from '../kit/logger.js';
import { connectionCapsFrom } from '../edge/connections.js';
import { DEFAULT_MAX_BODY_BYTES, startAlto, type AltoOptions } from '../edge/server.js';
import { advertiseUrlOf, nodeNameOf } from '../compute/cluster/membership.js';
import { CHALLENGE_KINDS, LETS_ENCRYPT_DIRECTORY, type ChallengeKind } from '../edge/acme.js';
import { bold, dim, green, yellow } from './output.js';

export interface UpFlags {
  port?: string;
  host?: string;
  data?: string;
  openSignup?: boolean;
  maxBody?: string;
  store?: string;
  cache?: string;
  events?: string;
  objects?: string;
  smtp?: string;
  sandbox?: string;
  appsDomain?: string;
  node?: string;
  advertise?: string;
  maxInstances?: string;
  httpsPort?: string;
  tlsCert?: string;
  tlsKey?: string;
  domain?: string;
  acmeEmail?: string;
  acmeDirectory?: string;
  backupTo?: string;
  backupEvery?: string;
  backupKeep?: string;
}

export async function runUp(flags: UpFlags): Promise<void> {
  const port = Number(flags.port ?? process.env.ALTO_PORT ?? 4000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0 to 65535, not "${flags.port}"`);
  const maxBodyBytes = Number(flags.maxBody ?? process.env.ALTO_MAX_BODY_BYTES ?? DEFAULT_MAX_BODY_BYTES);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024) throw new Error('--max-body must be a whole number of bytes, at least 1024');
  // Checked before anything starts; the name is claimed once the edge listens (see below).
  const node = flags.node ?? (process.env.ALTO_NODE || undefined);
  if (node !== undefined) nodeNameOf(node);
  const advertiseUrl = flags.advertise ?? (process.env.ALTO_ADVERTISE || undefined);
  if (advertiseUrl !== undefined) advertiseUrlOf(advertiseUrl);
  // The node's instance cap is read where its apps start (compute/apps/service.ts): checked here, before anything starts.
  const maxInstances = flags.maxInstances ?? process.env.ALTO_MAX_INSTANCES;
  if (maxInstances !== undefined && maxInstances !== '') {
    if (!/^\d{1,6}$/.test(maxInstances.trim())) throw new Error(`--max-instances (ALTO_MAX_INSTANCES) must be a whole number (0: no cap), not "${maxInstances.slice(0, 40)}"`);
    process.env.ALTO_MAX_INSTANCES = maxInstances.trim();
  }
  const https = httpsSettings(flags);
  const log = createLogger();
  const options: AltoOptions = {
    ...https,
    port,
    host: flags.host ?? process.env.ALTO_HOST,
    dataDir: flags.data ?? process.env.ALTO_DATA ?? '.alto',
    adminKey: process.env.ALTO_ADMIN_KEY || undefined,
    openSignup: flags.openSignup ?? process.env.ALTO_OPEN_SIGNUP === '1',
    maxBodyBytes,
    postgresUrl: storeUrl(flags.store ?? process.env.ALTO_STORE, 'postgres', '--store'),
    redisUrl: storeUrl(flags.cache ?? process.env.ALTO_CACHE, 'redis', '--cache'),
    natsUrl: storeUrl(flags.events ?? process.env.ALTO_EVENTS, 'nats', '--events'),
    objectsUrl: objectsUrl(flags.objects ?? process.env.ALTO_OBJECTS),
    smtpUrl: smtpUrl(flags.smtp ?? process.env.ALTO_SMTP_URL),
    metering: meteringSetting(process.env.ALTO_METERING),
    usageFlushMs: positiveWholeNumber(process.env.ALTO_USAGE_FLUSH_MS, 'ALTO_USAGE_FLUSH_MS'),
    sandbox: sandboxChoice(flags.sandbox ?? process.env.ALTO_SANDBOX),
    appsDomain: appsDomain(flags.appsDomain ?? process.env.ALTO_APPS_DOMAIN),
    connectionCaps: connectionCapsFrom(process.env),
    headersTimeoutMs: positiveWholeNumber(process.env.ALTO_HEADERS_TIMEOUT_MS, 'ALTO_HEADERS_TIMEOUT_MS'),
    bodyTimeoutMs: positiveWholeNumber(process.env.ALTO_BODY_TIMEOUT_MS, 'ALTO_BODY_TIMEOUT_MS'),
    domainCheckMs: positiveWholeNumber(process.env.ALTO_DOMAIN_CHECK_MS, 'ALTO_DOMAIN_CHECK_MS'),
    logger: log,
    node,
    advertiseUrl,
    backup: backupSettings(flags),
  };
  // Joins the cloud once the edge listens (the advertised URL defaults to the one it listens at);
  // a name held by another live node ends this start with the reason.
  const alto = await startAlto(options);
  const { membership } = alto;

  const lines = [
    '',
    `  ${bold('Alto')} is up at ${green(alto.url)}`,
    `  API:      ${alto.url}/v1/{service}/{Endpoint}   OpenAPI: ${alto.url}/v1/openapi.json`,
    ...(alto.httpsPort !== undefined ? [`  HTTPS:    port ${alto.httpsPort} (HTTP/2 and HTTP/1.1)`] : []),
    `  Node:     ${membership.name} ${dim(`(id ${membership.id}, reached at ${membership.advertiseUrl})`)}`,
  ];
  if (alto.generatedAdminKey) {
    lines.push(
      `  ${yellow('Admin key')} (shown once, saved to ${alto.adminKeyPath}, mode 0600):`,
      `    ${bold(alto.generatedAdminKey)}`,
    );
  } else {
    lines.push(`  Admin key: in ${alto.adminKeyPath}`);
  }
  lines.push(`  ${dim('Try: npx alto call id Generate --type ulid    Stop: Ctrl-C')}`, '');
  process.stderr.write(lines.join('\n') + '\n');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping');
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void alto.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/**
 * `--https-port` with `--tls-cert`/`--tls-key` and/or ACME (`--acme-email`, `--acme-directory`,
 * `--domain`), from the flags or ALTO_HTTPS_PORT, ALTO_TLS_CERT, ALTO_TLS_KEY, ALTO_DOMAIN,
 * ALTO_ACME_EMAIL, ALTO_ACME_DIRECTORY (and ALTO_ACME_CHALLENGES, ALTO_ACME_CHECK_MS,
 * ALTO_ACME_RETRY_MS). With ACME the HTTPS port defaults to 443.
 */
function httpsSettings(flags: UpFlags): Pick<AltoOptions, 'httpsPort' | 'tlsCertificateFile' | 'tlsKeyFile' | 'domain' | 'acme'> {
  const portText = flags.httpsPort ?? (process.env.ALTO_HTTPS_PORT || undefined);
  const tlsCertificateFile = flags.tlsCert ?? (process.env.ALTO_TLS_CERT || undefined);
  const tlsKeyFile = flags.tlsKey ?? (process.env.ALTO_TLS_KEY || undefined);
  const domainText = flags.domain ?? (process.env.ALTO_DOMAIN || undefined);
  const domain = domainText === undefined ? undefined : domainName(domainText, '--domain');
  const acme = acmeSettings(flags);
  if ((tlsCertificateFile === undefined) !== (tlsKeyFile === undefined)) throw new Error('--tls-cert and --tls-key go together: give both files, or neither');
  if (portText === undefined && !acme) {
    if (tlsCertificateFile) throw new Error('--tls-cert needs --https-port (e.g. --https-port 443) to serve it');
    return domain ? { domain } : {};
  }
  const httpsPort = Number(portText ?? 443);
  if (!Number.isInteger(httpsPort) || httpsPort < 0 || httpsPort > 65535) throw new Error(`--https-port must be 0 to 65535, not "${portText}"`);
  if (!tlsCertificateFile && !acme) throw new Error('--https-port needs a certificate: give --tls-cert and --tls-key, or --acme-email to obtain them');
  return { httpsPort, tlsCertificateFile, tlsKeyFile, domain, acme };
}

const EMAIL_PATTERN = /^[^\s@]{1,64}@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/i;

/** ACME when `--acme-email` is given; else undefined (a directory alone is refused). */
function acmeSettings(flags: UpFlags): AltoOptions['acme'] {
  const email = flags.acmeEmail ?? (process.env.ALTO_ACME_EMAIL || undefined);
  const directory = flags.acmeDirectory ?? (process.env.ALTO_ACME_DIRECTORY || undefined);
  if (email === undefined) {
    if (directory !== undefined) throw new Error('--acme-directory needs --acme-email: the address the directory may write to about the certificates');
    return undefined;
  }
  if (!EMAIL_PATTERN.test(email)) throw new Error(`--acme-email must be an email address such as you@example.com, not "${email}"`);
  let directoryUrl = LETS_ENCRYPT_DIRECTORY;
  if (directory !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(directory);
    } catch {
      parsed = undefined;
    }
    if (!parsed || parsed.protocol !== 'https:') throw new Error(`--acme-directory must be the https:// URL of an ACME directory, e.g. ${LETS_ENCRYPT_DIRECTORY}, not "${directory}"`);
    directoryUrl = parsed.toString();
  }
  const challengesText = process.env.ALTO_ACME_CHALLENGES || CHALLENGE_KINDS.join(',');
  const challenges = challengesText.split(',').map((kind) => kind.trim());
  for (const kind of challenges) {
    if (!CHALLENGE_KINDS.includes(kind as ChallengeKind)) throw new Error(`ALTO_ACME_CHALLENGES lists ${CHALLENGE_KINDS.join(' and/or ')}, not "${kind}"`);
  }
  return {
    email,
    directoryUrl,
    challenges: challenges as ChallengeKind[],
    checkEveryMs: positiveWholeNumber(process.env.ALTO_ACME_CHECK_MS, 'ALTO_ACME_CHECK_MS'),
    retryBaseMs: positiveWholeNumber(process.env.ALTO_ACME_RETRY_MS, 'ALTO_ACME_RETRY_MS'),
  };
}

const DURATION = /^(\d+)(s|m|h|d)$/;
const DURATION_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * `--backup-to <folder | s3://...>` with `--backup-every 6h` (default 24h) and `--backup-keep 14`
 * (default 14), or ALTO_BACKUP_TO, ALTO_BACKUP_EVERY, ALTO_BACKUP_KEEP: scheduled backups.
 */
function backupSettings(flags: UpFlags): AltoOptions['backup'] {
  const to = flags.backupTo ?? (process.env.ALTO_BACKUP_TO || undefined);
  const every = flags.backupEvery ?? (process.env.ALTO_BACKUP_EVERY || undefined);
  const keep = flags.backupKeep ?? (process.env.ALTO_BACKUP_KEEP || undefined);
  if (to === undefined) {
    if (every !== undefined || keep !== undefined) throw new Error('--backup-every and --backup-keep need --backup-to: the folder (or s3://...) to back up into');
    return undefined;
  }
  const match = DURATION.exec(every ?? '24h');
  if (!match || Number(match[1]) < 1) throw new Error(`--backup-every must be a period such as 30m, 6h or 1d, not "${every}"`);
  const keepCount = Number(keep ?? 14);
  if (!Number.isInteger(keepCount) || keepCount < 1) throw new Error(`--backup-keep must be a whole number of backups, at least 1, not "${keep}"`);
  return { to, everyMs: Number(match[1]) * DURATION_MS[match[2] as keyof typeof DURATION_MS], keep: keepCount };
}

/** `--smtp smtp://user:pass@host:port` (or smtps://): where email is delivered; none means outbox only. */
function smtpUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new Error(`--smtp must be an smtp:// or smtps:// URL, e.g. smtp://user:pass@mail.example.com:587, not "${value}"`);
  }
  if (!['smtp:', 'smtps:'].includes(parsed.protocol) || !parsed.hostname) {
    throw new Error(`--smtp must be an smtp:// or smtps:// URL with a host, e.g. smtp://user:pass@mail.example.com:587`);
  }
  return value;
}

/** `--sandbox auto|microvm|process` (ALTO_SANDBOX): how apps run; auto by default. */
function sandboxChoice(value: string | undefined): 'auto' | 'microvm' | 'process' {
  if (value === undefined || value === '') return 'auto';
  if (value === 'auto' || value === 'microvm' || value === 'process') return value;
  throw new Error(`--sandbox must be auto, microvm or process, not "${value}"`);
}

/** `--apps-domain example.com` (ALTO_APPS_DOMAIN): apps answer at <app>.<project>.<domain>. */
function appsDomain(value: string | undefined): string {
  if (value === undefined || value === '') return 'localhost';
  return domainName(value, '--apps-domain');
}

function domainName(value: string, flag: string): string {
  const domain = value.trim().toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/.test(domain))
    throw new Error(`${flag} must be a domain name such as ${flag === '--domain' ? 'alto' : 'apps'}.example.com, not "${value}"`);
  return domain;
}

/** `ALTO_METERING=off` turns usage records and limits off; on (the default) otherwise. */
function meteringSetting(value: string | undefined): boolean {
  if (value === undefined || value === '' || value === 'on') return true;
  if (value === 'off') return false;
  throw new Error(`ALTO_METERING must be "on" or "off", not "${value}"`);
}

function positiveWholeNumber(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 1) throw new Error(`${name} must be a positive whole number, not "${value}"`);
  return number;
}

/** `--objects s3://BUCKET?endpoint=...`; `local` (or nothing) means files in the data folder. Checked in full when opened. */
function objectsUrl(value: string | undefined): string | undefined {
  if (!value || value === 'local') return undefined;
  if (!value.startsWith('s3://')) throw new Error(`--objects must be an s3://BUCKET?endpoint=URL&region=R&path_style=1 URL, not "${value}"`);
  return value;
}

/** `--store postgres://...`, `--cache redis://...` or `--events nats://...`; `sqlite` (or nothing) means embedded. */
function storeUrl(value: string | undefined, scheme: 'postgres' | 'redis' | 'nats', flag: string): string | undefined {
  if (!value || value === 'sqlite' || value === 'embedded') return undefined;
  const schemes = { postgres: ['postgres:', 'postgresql:'], redis: ['redis:', 'rediss:'], nats: ['nats:'] }[scheme];
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    throw new Error(`${flag} must be a ${scheme}:// URL, not "${value}"`);
  }
  if (!schemes.includes(protocol)) throw new Error(`${flag} must be a ${scheme}:// URL, not "${value}"`);
  return value;
}
