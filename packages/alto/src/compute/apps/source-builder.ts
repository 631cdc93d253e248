/**
 * @module compute/apps/source-builder
 * Source deploys (app/Run or app/Update with repo, branch and path, or with files, and no
 * image): the app service asks a builder to turn the Node.js project into an image and runs
 * that image. Apps do not know how projects are built: the functions register the builder when
 * they start (compute/functions/service.ts), so compute/apps never imports compute/functions.
 */
import { errors } from '../../kit/errors.js';

/** Who deploys: the project of the key making the call (the app manager's `AppOwner`). */
export interface SourceOwner {
  projectId: string;
  projectName: string;
  /** Admin keys build with what only the admin may use (a repository on the server's disk). */
  admin: boolean;
}

/** What a source deploy names: a git repository (with branch and path) or uploaded files. */
export interface AppSourceRequest {
  name: string;
  repo?: string;
  branch?: string;
  path?: string;
  files?: Record<string, string>;
}

/** Builds an app's image from its source, handing its log's lines to `onLog`; answers the image reference to run. */
export type SourceBuilder = (owner: SourceOwner, request: AppSourceRequest, onLog?: (line: string) => void) => Promise<string>;

/** The one builder of this node's apps, registered by whoever can build. */
export class AppSources {
  private builder: SourceBuilder | undefined;

  register(builder: SourceBuilder): void {
    this.builder = builder;
  }

  async build(owner: SourceOwner, request: AppSourceRequest, onLog?: (line: string) => void): Promise<string> {
    if (!this.builder) throw errors.unavailable('building apps from source needs the function service, which this Alto does not run; give image instead');
    return this.builder(owner, request, onLog);
  }
}
