/**
 * @module edge/registry
 * Every service this build of Alto offers. The edge serves them, the OpenAPI document
 * describes them, and the SDK is generated from that document.
 */
import { cacheService } from '../blocks/cache/index.js';
import { cronService } from '../blocks/cron/index.js';
import { dbService } from '../blocks/db/index.js';
import { emailService } from '../blocks/email/index.js';
import { eventService } from '../blocks/event/index.js';
import { fileService } from '../blocks/file/index.js';
import { idService } from '../blocks/id/index.js';
import { mqService } from '../blocks/mq/index.js';
import { otpService } from '../blocks/otp/index.js';
import { secretService } from '../blocks/secret/index.js';
import { searchService } from '../blocks/search/index.js';
import { spaceService } from '../blocks/space/index.js';
import { streamService } from '../blocks/stream/index.js';
import { urlService } from '../blocks/url/index.js';
import { userService } from '../blocks/user/index.js';
import { appService } from '../compute/apps/service.js';
import { domainsService } from '../compute/apps/domains-service.js';
import { nodesService } from '../compute/cluster/service.js';
import { functionService } from '../compute/functions/service.js';
import { templateService } from '../compute/templates/service.js';
import { imagesService, registryService } from '../compute/images/service.js';
import { accountsService } from '../platform/services/accounts.js';
import { keysService } from '../platform/services/keys.js';
import { projectsService } from '../platform/services/projects.js';
import { usageService } from '../platform/services/usage.js';
import { logsService } from '../platform/services/logs.js';
import type { ServiceDefinition } from '../platform/service.js';
import { buildOpenApiDocument } from './openapi.js';

export function allServices(): ServiceDefinition[] {
  return [accountsService, projectsService, keysService, usageService, logsService, idService, dbService, urlService, otpService, cacheService, secretService, cronService, searchService, eventService, mqService, streamService, userService, emailService, spaceService, fileService, imagesService, registryService, appService, domainsService, templateService, functionService, nodesService];
}

export { buildOpenApiDocument };
