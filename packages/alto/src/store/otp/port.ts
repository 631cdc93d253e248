/**
 * @module store/otp/port
 * The otp storage port: per tenant namespace and id, the TOTP secret (kept as given: the block
 * seals it with the master key first), its settings, the last time step a code was accepted
 * for (replay protection) and the failed-validation window (rate limiting). Every change goes
 * through `update`, which reads and writes one id with every other change to it waiting, in
 * this process or any other sharing the store. Adapters: `sqlite.ts` (embedded) and
 * `postgres.ts` (with `--store postgres://`).
 */

export interface OtpRecord {
  /** The seed as the block stores it (sealed). */
  secret: Buffer;
  /** The HMAC's hash, as the block names it (`SHA1`, `SHA256`, `SHA512`). */
  algorithm: string;
  digits: number;
  periodSeconds: number;
  /** The highest time step a code was accepted for; -1 before the first. */
  lastStep: number;
  /** Failed validations since `failuresSince` (milliseconds since the epoch). */
  failures: number;
  failuresSince: number;
  /** When the id's secret was made (milliseconds since the epoch). */
  createdAt: number;
}

/** What an `update` step decides: the caller's answer, and the record to store, if any. */
export interface OtpChange<T> {
  result: T;
  /** Stored in place of the current record (or as the new one); nothing is written when absent. */
  save?: OtpRecord;
}

export interface OtpStore {
  readonly backend: 'sqlite' | 'postgres';
  /**
   * Reads the id's record (undefined when there is none), runs `change` on it and stores what it
   * asks to, as one atomic step: no other change to that id interleaves. An error thrown by
   * `change` writes nothing and is thrown to the caller.
   */
  update<T>(namespace: string, id: string, change: (current: OtpRecord | undefined) => OtpChange<T>): Promise<T>;
  /**
   * Offers every stored secret to `rewrite`; where it answers bytes, they replace the secret
   * unless it changed meanwhile. Returns how many were replaced.
   */
  rewriteSecrets(rewrite: (namespace: string, id: string, stored: Buffer) => Buffer | undefined): Promise<number>;
  /** Forgets the ids of every environment of a project (namespaces `${projectId}/...`); returns how many. */
  deleteProject(projectId: string): Promise<number>;
}
