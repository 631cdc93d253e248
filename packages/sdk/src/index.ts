/**
 * @module @alto/sdk
 * The TypeScript client for Alto. Every service and endpoint is generated from the server's
 * own definitions; requests and responses are typed, streams are async iterators, and errors
 * are {@link AltoError} carrying the server's code.
 *
 * @example
 * import { Alto } from '@alto/sdk';
 * const alto = new Alto({ url: 'http://localhost:4000', key: process.env.ALTO_KEY });
 * const { id } = await alto.id.generate({ type: 'ulid' });
 */
import { Transport, type AltoOptions } from './client.js';
import { Services } from './generated.js';

export { AltoError, Transport, type AltoOptions } from './client.js';
export * from './generated.js';

export class Alto extends Services {
  /** The generic transport: call any endpoint by name, including ones newer than this SDK. */
  readonly transport: Transport;

  constructor(options: AltoOptions) {
    const transport = new Transport(options);
    super(transport);
    this.transport = transport;
  }
}
