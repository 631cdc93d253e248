/**
 * @module edge/certificates
 * The certificates the HTTPS listener serves, by name: those issued for the hosts Alto serves
 * (compute/tls: ACME), then the one the operator brings (`--tls-cert`/`--tls-key`, a wildcard or
 * any other), which answers every name no issued certificate covers. The operator's files are
 * read again when they change (a renewal by certbot or another tool), and a pair that does not
 * load keeps the previous one serving, with the reason logged. TLS-ALPN-01 challenge certificates
 * live here too while a validation runs.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { Logger } from '../kit/logger.js';
import type { CertificateSource } from './tls.js';

export interface CertificatePair {
  /** PEM: the leaf first, then its chain. */
  certificate: string;
  /** PEM. */
  key: string;
}

interface Loaded {
  context: SecureContext;
  leaf: X509Certificate;
  pair: CertificatePair;
}

/** How often the operator's files are checked for a change. */
const FILE_POLL_MS = 1_000;

/** Builds the context for a pair; throws a sentence when the pair does not load or does not match. */
export function loadPair(pair: CertificatePair): Loaded {
  const leaf = new X509Certificate(pair.certificate);
  const context = createSecureContext({ cert: pair.certificate, key: pair.key });
  return { context, leaf, pair };
}

export class CertificateBook implements CertificateSource {
  private readonly issued = new Map<string, Loaded>();
  private readonly challenges = new Map<string, SecureContext>();
  private brought: Loaded | undefined;
  private watched: string[] = [];
  /** Asked for a name nothing here covers (ACME on demand); else the operator's certificate answers it. */
  onMissing: ((host: string) => Promise<SecureContext | undefined>) | undefined;
  /** Asked for a TLS-ALPN-01 challenge certificate this process does not hold (one another node stored). */
  onMissingChallenge: ((host: string) => Promise<SecureContext | undefined>) | undefined;

  constructor(private readonly log: Logger) {}

  contextFor(serverName: string | undefined): SecureContext | undefined | Promise<SecureContext | undefined> {
    const name = serverName?.toLowerCase().replace(/\.$/, '');
    // A client that names an address (against RFC 6066) is treated as one that names nothing.
    if (name === undefined || name === '' || isIP(name) !== 0) return this.brought?.context;
    return this.servedContext(name) ?? this.onMissing?.(name) ?? this.brought?.context;
  }

  /** The certificate served for `host` now: one issued for it, or the operator's when it names it. */
  servedContext(host: string): SecureContext | undefined {
    return this.issued.get(host)?.context ?? (this.broughtCovers(host) ? this.brought!.context : undefined);
  }

  challengeFor(serverName: string): SecureContext | undefined | Promise<SecureContext | undefined> {
    const name = serverName.toLowerCase();
    return this.challenges.get(name) ?? this.onMissingChallenge?.(name);
  }

  /** A client that names no server gets the operator's certificate. */
  unnamed(): CertificatePair | undefined {
    return this.brought?.pair;
  }

  /** Whether a certificate is served for `host`: one issued for it, or the operator's when it names it. */
  has(host: string): boolean {
    return this.issued.has(host) || this.broughtCovers(host);
  }

  /** Whether the operator's certificate names `host` (a wildcard included). */
  broughtCovers(host: string): boolean {
    return this.brought !== undefined && this.brought.leaf.checkHost(host) !== undefined;
  }

  /** Serves `pair` for `host` from now on; throws (and changes nothing) when it does not load. */
  setIssued(host: string, pair: CertificatePair): void {
    this.issued.set(host, loadPair(pair));
  }

  removeIssued(host: string): void {
    this.issued.delete(host);
  }

  setChallenge(host: string, pair: CertificatePair): void {
    this.challenges.set(host, loadPair(pair).context);
  }

  removeChallenge(host: string): void {
    this.challenges.delete(host);
  }

  /** Serves the operator's pair from `certificatePath` and `keyPath`, and again each time either changes. Throws when it does not load now. */
  useFiles(certificatePath: string, keyPath: string, pollMs = FILE_POLL_MS): void {
    this.brought = readPair(certificatePath, keyPath);
    const reload = () => {
      try {
        this.brought = readPair(certificatePath, keyPath);
        this.log.info({ cert: certificatePath, not_after: this.brought.leaf.validTo }, 'tls certificate reloaded');
      } catch (error) {
        // Mid-rotation the certificate and key may not match yet: the next change loads them.
        this.log.warn({ cert: certificatePath, err: error }, 'tls certificate files changed but do not load; the previous certificate is still served');
      }
    };
    for (const path of [certificatePath, keyPath]) {
      watchFile(path, { interval: pollMs, persistent: false }, (current, previous) => {
        if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size) reload();
      });
      this.watched.push(path);
    }
  }

  close(): void {
    for (const path of this.watched) unwatchFile(path);
    this.watched = [];
  }
}

function readPair(certificatePath: string, keyPath: string): Loaded {
  let pair: CertificatePair;
  try {
    pair = { certificate: readFileSync(certificatePath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
  } catch (error) {
    throw new Error(`cannot read the TLS certificate or key: ${(error as Error).message}`);
  }
  try {
    return loadPair(pair);
  } catch (error) {
    throw new Error(`${certificatePath} and ${keyPath} are not a PEM certificate and its private key: ${(error as Error).message}`);
  }
}
