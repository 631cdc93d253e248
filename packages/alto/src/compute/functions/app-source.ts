/**
 * @module compute/functions/app-source
 * The source builder the functions register with the apps (compute/apps/source-builder.ts) for
 * source deploys (app/Run or app/Update with repo, branch and path, or with files): the Node.js
 * project is built into an image over the functions' runtime (FunctionManager.buildApp) and the
 * app runs that image.
 */
import { errors } from '../../kit/errors.js';
import type { AppOwner } from '../apps/manager.js';
import type { AppSourceRequest } from '../apps/source-builder.js';
import type { FunctionManager } from './manager.js';

/** Builds the app's image from its source; answers the image reference to run. */
export async function buildAppFromSource(functions: Pick<FunctionManager, 'buildApp'>, owner: AppOwner, request: AppSourceRequest, onLog?: (line: string) => void): Promise<string> {
  if (request.repo !== undefined && request.files !== undefined) throw errors.badRequest('give repo or files, not both');
  if (request.repo !== undefined && !/^(https?|git|ssh|file):\/\/|^\//.test(request.repo.trim()))
    throw errors.badRequest(
      `repo "${request.repo}" is not a git URL. Alto runs OCI images (give image), or builds a Node.js project from a git repository (https://host/org/repo, with branch and path) or an uploaded folder (files)`,
    );
  return functions.buildApp(owner, request.name, request.files !== undefined ? { files: request.files } : { repo: request.repo, branch: request.branch, subfolder: request.path }, onLog);
}
