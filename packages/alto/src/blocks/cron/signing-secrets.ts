/**
 * @module blocks/cron/signing-secrets
 * Each namespace's signing secret, made on first use and the same in every process sharing
 * the store, sealed with the master key at rest. Secrets an older Alto stored in plain text
 * still read, and are sealed by `sealPlain` at start.
 */
import { randomBytes } from 'node:crypto';
import { isSealedText, type SecretCipher } from '../../kit/master-key.js';
import type { CronStore } from '../../store/cron/port.js';

export class SigningSecrets {
  constructor(
    private readonly store: CronStore,
    /** Seals the secrets at rest (the platform's master key); without one they are kept as they are. */
    private readonly cipher?: SecretCipher,
  ) {}

  /** The namespace's secret, `whsec_` and 64 hex digits. */
  async get(namespace: string): Promise<string> {
    const stored = await this.store.signingSecret(namespace, () => this.seal(namespace, `whsec_${randomBytes(32).toString('hex')}`));
    return this.cipher ? this.cipher.openText(stored, where(namespace)) : stored;
  }

  /** Makes `secret` the namespace's secret when it has none yet (a project imported from an archive). */
  async adopt(namespace: string, secret: string): Promise<void> {
    await this.store.signingSecret(namespace, () => this.seal(namespace, secret));
  }

  /** Seals the secrets stored in plain text before they were sealed; returns how many. */
  async sealPlain(): Promise<number> {
    if (!this.cipher) return 0;
    return this.store.rewriteSigningSecrets((namespace, stored) => (isSealedText(stored) ? undefined : this.seal(namespace, stored)));
  }

  private seal(namespace: string, secret: string): string {
    return this.cipher ? this.cipher.sealText(secret, where(namespace)) : secret;
  }
}

/** What a sealed secret is bound to: it opens only as this namespace's signing secret. */
function where(namespace: string): string[] {
  return ['cron.signing_secret', namespace];
}
