/**
 * GET /v1/openapi.json is a valid OpenAPI 3.1 document covering every endpoint, with examples
 * that the server itself accepts.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { allServices } from '../src/edge/registry.js';
import { startInProcess, type TestAlto } from './harness.js';

let alto: TestAlto;
let document: any;

before(async () => {
  alto = await startInProcess();
  document = await (await fetch(`${alto.url}/v1/openapi.json`)).json();
});
after(() => alto.close());

test('the document validates as OpenAPI 3.1', async () => {
  assert.equal(document.openapi, '3.1.0');
  const validator = new Validator();
  const result = await validator.validate(document);
  assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
});

test('every endpoint of every service is documented with an example and schemas', () => {
  for (const service of allServices()) {
    for (const endpoint of Object.keys(service.endpoints)) {
      const operation = document.paths[`/v1/${service.name}/${endpoint}`]?.post;
      assert.ok(operation, `${service.name}/${endpoint} is missing`);
      assert.ok(operation.requestBody.content['application/json'].example !== undefined, `${service.name}/${endpoint} has no example`);
      for (const ref of [operation.requestBody.content['application/json'].schema.$ref, operation.responses['200'].content['application/json'].schema.$ref]) {
        assert.ok(document.components.schemas[ref.split('/').pop()], `${ref} is not in components`);
      }
    }
  }
});

test('every example validates against its own endpoint', async () => {
  for (const service of allServices()) {
    for (const [name, endpoint] of Object.entries(service.endpoints)) {
      const parsed = endpoint.request.safeParse(endpoint.example);
      assert.ok(parsed.success, `${service.name}/${name}: ${parsed.error?.message}`);
    }
  }
});
