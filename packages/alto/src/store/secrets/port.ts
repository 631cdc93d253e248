/**
 * @module store/secrets/port
 * The secret storage port: sealed (encrypted) values under a path and a key, per tenant
 * namespace. The store never sees a plaintext: the secret block encrypts before `put` and
 * decrypts after `get`. Adapters: `sqlite.ts` (embedded) and `postgres.ts` (scale-out). Every
 * tenant method takes the namespace first, so one project can never name another's secrets.
 */

export interface StoredSecret {
  /** Folder-like grouping, "" for the top level. */
  path: string;
  key: string;
  /** The sealed value, as the block produced it. */
  ciphertext: Buffer;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
}

export interface SecretWrite {
  path: string;
  key: string;
  ciphertext: Buffer;
  /** The time of this write: the creation time of a new secret, the update time of any. */
  at: number;
}

export interface SecretStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Creates or replaces a secret; a replaced one keeps its creation time. Durable on return. */
  put(namespace: string, secret: SecretWrite): Promise<void>;
  get(namespace: string, path: string, key: string): Promise<StoredSecret | undefined>;
  /** Returns false when there was no such secret. */
  delete(namespace: string, path: string, key: string): Promise<boolean>;
  /** The keys directly at `path`, sorted. */
  listKeys(namespace: string, path: string): Promise<string[]>;
  /** The distinct paths beneath `path` (every non-empty one when `path` is ""), sorted. */
  listPaths(namespace: string, path: string): Promise<string[]>;
  /** Deletes the secrets of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<number>;
  /**
   * Records the master key's fingerprint the first time, and returns the recorded one: a
   * different answer means this process holds another key than the one the secrets were sealed with.
   */
  claimKeyFingerprint(fingerprint: string): Promise<string>;
  /** Leaves the shared connection open. */
  close(): Promise<void>;
}
