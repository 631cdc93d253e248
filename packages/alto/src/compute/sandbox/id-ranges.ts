/**
 * @module compute/sandbox/id-ranges
 * Host id ranges of the process driver: each tenant's sandboxes map ids 0-65535 to a range of
 * host uids and gids of their own (`base + n * 65536`), so the kernel's per-user accounting
 * (inotify instances and watches, user namespaces, message queues, locked memory) counts one
 * tenant apart from another, and no tenant's files are another's. Range n of a tenant is kept in
 * `<dir>/<n>` (created exclusively, holding the tenant), next to the data it owns, so it stays the
 * same across restarts: a volume's files keep their owners. Range 0 is for sandboxes started
 * without a tenant.
 */
import { linkSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ID_COUNT = 65_536;
/** The highest host id a range may reach (4294967295 is "no id"). */
const HIGHEST_HOST_ID = 4_294_967_294;

export class IdRanges {
  private readonly byTenant = new Map<string, number>();
  private loaded = false;

  constructor(
    private readonly dir: string,
    /** The first host id of range 0. */
    readonly base: number,
  ) {}

  /** The first host id of `tenant`'s range, taking a new range on its first sandbox. */
  baseOf(tenant: string | undefined): number {
    if (!tenant) return this.base;
    this.load();
    let index = this.byTenant.get(tenant);
    if (index === undefined) {
      index = this.take(tenant);
      this.byTenant.set(tenant, index);
    }
    return this.base + index * ID_COUNT;
  }

  private load(): void {
    if (this.loaded) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(this.dir)) {
      if (!/^\d+$/.test(name)) continue;
      this.byTenant.set(readFileSync(join(this.dir, name), 'utf8'), Number(name));
    }
    this.loaded = true;
  }

  private take(tenant: string): number {
    const last = Math.floor((HIGHEST_HOST_ID + 1 - this.base) / ID_COUNT) - 1;
    const taken = new Set(this.byTenant.values());
    for (let index = 1; index <= last; index++) {
      if (taken.has(index)) continue;
      // Written whole, then linked into place: the link fails if the range is taken, and a reader never sees half a name.
      const temporary = join(this.dir, `.${process.pid}-${index}.tmp`);
      writeFileSync(temporary, tenant, { mode: 0o600 });
      try {
        linkSync(temporary, join(this.dir, String(index)));
        return index;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        // Taken meanwhile by another Alto on this data folder: it may be this tenant's.
        const owner = readFileSync(join(this.dir, String(index)), 'utf8');
        this.byTenant.set(owner, index);
        if (owner === tenant) return index;
      } finally {
        rmSync(temporary, { force: true });
      }
    }
    throw new Error(`no free host id range left for tenant ${tenant} (${last} ranges of ${ID_COUNT} ids from ${this.base})`);
  }
}
