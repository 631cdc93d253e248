/**
 * @module edge/registry
 * Every service this build of Alto offers. The edge serves them, the OpenAPI document
 * describes them, and the SDK is generated from that document.
 */
import { idService } from '../blocks/id/index.js';
import { accountsService } from '../platform/services/accounts.js';
import { keysService } from '../platform/services/keys.js';
import { projectsService } from '../platform/services/projects.js';
import type { ServiceDefinition } from '../platform/service.js';
import { buildOpenApiDocument } from './openapi.js';

export function allServices(): ServiceDefinition[] {
  return [accountsService, projectsService, keysService, idService];
}

export { buildOpenApiDocument };
