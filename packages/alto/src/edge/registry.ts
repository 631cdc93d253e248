/**
 * @module edge/registry
 * Every service this build of Alto offers. The edge serves them, the OpenAPI document
 * describes them, and the SDK is generated from that document.
 */
import { cacheService } from '../blocks/cache/index.js';
import { cronService } from '../blocks/cron/index.js';
import { dbService } from '../blocks/db/index.js';
import { idService } from '../blocks/id/index.js';
import { otpService } from '../blocks/otp/index.js';
import { secretService } from '../blocks/secret/index.js';
import { searchService } from '../blocks/search/index.js';
import { urlService } from '../blocks/url/index.js';
import { accountsService } from '../platform/services/accounts.js';
import { keysService } from '../platform/services/keys.js';
import { projectsService } from '../platform/services/projects.js';
import type { ServiceDefinition } from '../platform/service.js';
import { buildOpenApiDocument } from './openapi.js';

export function allServices(): ServiceDefinition[] {
  return [accountsService, projectsService, keysService, idService, dbService, urlService, otpService, cacheService, secretService, cronService, searchService];
}

export { buildOpenApiDocument };
