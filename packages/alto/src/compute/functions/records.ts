/**
 * @module compute/functions/records
 * What Alto remembers about functions, through the functions port the store factory opens
 * (SQLite, or PostgreSQL with `--store`, store/functions): this wrapper seals each function's
 * own API key with the master key before the store sees it and opens it on the way back, so no
 * store holds it in plain text. The key's id is kept to revoke it on Delete, its secret to run
 * the next version with (the secret is also in the app's hidden env, so this keeps nothing the
 * project's apps cannot read already).
 */
import { isSealedText, type SecretCipher } from '../../kit/master-key.js';
import { DEFAULT_ENVIRONMENT } from '../../platform/tenancy.js';
import { keySecretField, type FunctionRecord, type FunctionStore } from '../../store/functions/port.js';

export type { FunctionRecord };

export class FunctionRecords {
  /** `cipher` seals each function's own API key at rest; without one it is kept as given. */
  constructor(
    private readonly store: FunctionStore,
    private readonly cipher?: SecretCipher,
  ) {}

  private opened(record: FunctionRecord | undefined): FunctionRecord | undefined {
    if (!record || !this.cipher || !record.keySecret) return record;
    // A key written before sealing comes back as it is (sealLegacyKeys seals it).
    return { ...record, keySecret: this.cipher.openText(record.keySecret, keySecretField(record.id)) };
  }

  private sealed(record: FunctionRecord): FunctionRecord {
    if (!this.cipher || !record.keySecret) return record;
    return { ...record, keySecret: this.cipher.sealText(record.keySecret, keySecretField(record.id)) };
  }

  async find(projectId: string, name: string, environment = DEFAULT_ENVIRONMENT): Promise<FunctionRecord | undefined> {
    return this.opened(await this.store.find(projectId, environment, name));
  }

  async get(id: string): Promise<FunctionRecord | undefined> {
    return this.opened(await this.store.get(id));
  }

  /** The functions of the project's environment (the default one when not named). */
  async listOfProject(projectId: string, environment = DEFAULT_ENVIRONMENT): Promise<FunctionRecord[]> {
    return (await this.store.listOfProject(projectId, environment)).map((record) => this.opened(record)!);
  }

  /** False when the project has a function of that name already (made meanwhile, maybe by another process). */
  insert(record: FunctionRecord): Promise<boolean> {
    return this.store.insert(this.sealed(record));
  }

  /** False when the function was deleted meanwhile. */
  update(record: FunctionRecord): Promise<boolean> {
    return this.store.update(this.sealed(record));
  }

  setBuildLog(id: string, log: string): Promise<void> {
    return this.store.setBuildLog(id, log);
  }

  delete(id: string): Promise<boolean> {
    return this.store.delete(id);
  }

  deleteProject(projectId: string): Promise<void> {
    return this.store.deleteProject(projectId);
  }

  /** Seals the keys stored before sealing; answers how many. */
  async sealLegacyKeys(): Promise<number> {
    const cipher = this.cipher;
    if (!cipher) return 0;
    return this.store.rewriteKeySecrets((id, stored) => (isSealedText(stored) ? undefined : cipher.sealText(stored, keySecretField(id))));
  }
}
