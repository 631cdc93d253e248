/**
 * @module compute/apps/rootfs
 * Root-filesystem preparation for app starts: the image an app names (pulled when this machine
 * lacks it, within what the project may run; one pushed to Alto's own registry is read from the
 * registry's records, its blobs from the objects store when another node received the push) and its root filesystem, unpacked once per digest
 * into `<data>/apps/rootfs/sha256-<hex>` (shared read-only by every instance of every app on that
 * image; unpacked to a temporary folder then renamed) and removed once no app here runs it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AltoError, errors, isAltoError } from '../../kit/errors.js';
import type { Logger } from '../../kit/logger.js';
import type { ImageDetails, ImageManager } from '../images/manager.js';

/** Who asks for an image: the project, and whether the key is the admin's (any image). */
export interface ImageOwner {
  projectId: string;
  /** Needed to run what the project pushed to Alto's own registry (`<alto host>/<project>/<name>:<tag>`). */
  projectName?: string;
  admin: boolean;
}

export interface RootFilesystemsOptions {
  dataDir: string;
  images: ImageManager;
  log: Logger;
  /** Whether an app of this node still runs (or is recorded with) the image of this digest. */
  inUse(digest: string): boolean;
}

export class RootFilesystems {
  private readonly unpacking = new Map<string, Promise<string>>();

  constructor(private readonly options: RootFilesystemsOptions) {}

  private get images(): ImageManager {
    return this.options.images;
  }

  /**
   * The image, pulled when this machine lacks it (or always, to see whether a tag moved). A
   * project (not the admin) runs only images it may: public ones, ones it pulled or built, and
   * ones the admin shared with it; any other is pulled for it, anonymously and through the
   * outbound guard, so a registry that wants credentials refuses it.
   */
  async imageFor(owner: ImageOwner, reference: string, insecure: boolean, pull: 'missing' | 'always'): Promise<ImageDetails> {
    const text = reference.trim();
    if (/^(sha256:)?[a-f0-9]{4,64}$/.test(text)) {
      throw errors.badRequest(`"${text}" is a digest; name the image by reference (registry/repository:tag or repository@sha256:...)`);
    }
    // An image pushed to Alto itself is in the project's repository here: never pulled over the network.
    const pushed = owner.projectName === undefined ? undefined : this.images.repositories.localReference(text, { projectId: owner.projectId, projectName: owner.projectName });
    if (pushed !== undefined) return this.pushedImage({ projectId: owner.projectId, projectName: owner.projectName!, admin: owner.admin }, text, pushed);
    let local: ImageDetails | undefined;
    try {
      local = this.images.inspect(text);
    } catch (error) {
      if (!isAltoError(error) || error.status !== 404) throw error;
    }
    if (local && !owner.admin && !this.images.mayUse(local.digest, owner.projectId)) local = undefined;
    // A reference pinned by digest cannot move: the local copy is that image (function builds are named so).
    if (local && (pull === 'missing' || /@sha256:[a-f0-9]{64}$/.test(text))) return local;
    try {
      return await this.images.pull(text, { insecure, ...(owner.admin ? {} : { project: owner.projectId }) });
    } catch (error) {
      if (local) {
        this.options.log.warn({ err: error, image: text }, 'pulling the image failed; using the copy on this machine');
        return local;
      }
      if (isAltoError(error)) throw new AltoError(error.code, error.status, `pulling ${text}: ${error.detail}`);
      throw errors.badRequest(`pulling ${text} failed: ${(error as Error).message}`);
    }
  }

  /** A pushed image, as the registry's records say it is now (brought from the objects store when pushed to another node). */
  private async pushedImage(owner: ImageOwner & { projectName: string }, text: string, reference: string): Promise<ImageDetails> {
    const image = await this.images.repositories.runnable(owner, reference);
    if (!image) throw errors.notFound(`${text} was not pushed to this Alto (or is not a linux/amd64 image)`);
    if (!owner.admin && !this.images.mayUse(image.digest, owner.projectId)) throw errors.notFound(`${text} was not pushed to this Alto`);
    return image;
  }

  private pathOf(digest: string): string {
    return join(this.options.dataDir, 'apps', 'rootfs', digest.replace(':', '-'));
  }

  /** The image's root filesystem, unpacked once per digest and shared by every instance. */
  ensure(digest: string): Promise<string> {
    const path = this.pathOf(digest);
    if (existsSync(path)) return Promise.resolve(path);
    let pending = this.unpacking.get(digest);
    if (!pending) {
      mkdirSync(join(this.options.dataDir, 'apps', 'rootfs'), { recursive: true });
      pending = this.images
        .unpack(digest, path)
        .then(() => path)
        .finally(() => this.unpacking.delete(digest));
      this.unpacking.set(digest, pending);
    }
    return pending;
  }

  /** Removes a root filesystem no app runs any more. */
  async dropIfUnused(digest: string): Promise<void> {
    if (this.options.inUse(digest)) return;
    await rm(this.pathOf(digest), { recursive: true, force: true });
  }
}
