/**
 * Generates `src/generated.ts` (request and response types, one class per service, one method
 * per endpoint) from the OpenAPI document Alto builds from its service definitions.
 * Run: `npm run generate -w @alto/sdk`. A test fails when the committed file is stale.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderSdk } from './render.js';
import { allServices, buildOpenApiDocument } from '../../alto/src/edge/registry.js';

const target = fileURLToPath(new URL('../src/generated.ts', import.meta.url));
writeFileSync(target, renderSdk(buildOpenApiDocument(allServices(), 'sdk')));
console.log(`wrote ${target}`);
