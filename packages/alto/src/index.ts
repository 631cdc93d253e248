/**
 * @module alto
 * The Alto server as a library: start an instance in-process (tests, benchmarks, embedding).
 */
export { startAlto, type AltoOptions, type RunningAlto } from './edge/server.js';
export { allServices, buildOpenApiDocument } from './edge/registry.js';
export { AltoError, errors } from './kit/errors.js';
export { VERSION } from './version.js';
