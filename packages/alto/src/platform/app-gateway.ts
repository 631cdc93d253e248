/**
 * @module platform/app-gateway
 * How a block reaches one of its project's own apps by name (a cron job whose callback is
 * `app://web/hooks/nightly`) without importing compute, a layer beside it: compute registers the
 * gateway on the platform when it runs apps; without it, there is none and such calls are refused.
 */

/** One ready instance of an app, held for one request: `release()` once it has ended. */
export interface AppEndpoint {
  host: string;
  port: number;
  /** The Host header the app would see through the edge (`web.shop.localhost:4000`). */
  hostHeader: string;
  release(): void;
}

export interface AppGateway {
  /** Whether the project's environment (the default one when not named) has an app of this name. */
  hasApp(projectId: string, name: string, environment?: string): boolean;
  /** A ready instance of the app; throws AltoError 404 (no such app) or 503 (none ready). */
  openApp(projectId: string, name: string, environment?: string): Promise<AppEndpoint>;
}
