/**
 * @module platform/platform
 * One running Alto instance's shared parts: configuration, logger, stores, tenancy, metering,
 * the services it offers and the components they need. Created by the edge at start.
 */
import { errors } from '../kit/errors.js';
import { join } from 'node:path';
import type { Logger } from '../kit/logger.js';
import { loadMasterKey, SecretCipher, type MasterKey } from '../kit/master-key.js';
import { Readiness } from '../kit/readiness.js';
import type { Stores } from '../store/index.js';
import { Limits } from './limits.js';
import { Meter } from './metering.js';
import type { AppGateway } from './app-gateway.js';
import { AppLogSettings } from './app-log-settings.js';
import type { RequestLog } from './request-log.js';
import { PriceList } from './prices.js';
import type { Component, EndpointDefinition, ServiceDefinition } from './service.js';
import { Tenancy } from './tenancy.js';

/** The control store setting that holds the master key's fingerprint, recorded on first start. */
const MASTER_KEY_SETTING = 'master_key_fingerprint';

export interface PlatformConfig {
  dataDir: string;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /** Allow anyone to create an account (`--open-signup`). */
  openSignup: boolean;
  /** `--smtp smtp://...`: the instance's mail server, used by projects that set none of their own. */
  smtpUrl?: string;
  version: string;
  /**
   * Usage records and limits (default on). Off, calls are neither metered nor limited: for a
   * private instance with no one to bill, and for measuring what metering costs.
   */
  metering?: boolean;
  /** How often usage records are written (ms, default 1000): the most a crash can lose. */
  usageFlushMs?: number;
  /** `--sandbox auto|microvm|process`: how apps run (default auto). */
  sandbox?: 'auto' | 'microvm' | 'process';
  /** `--apps-domain`: apps are reached at `<app>.<project>.<domain>` (default localhost). */
  appsDomain?: string;
}

export class Platform {
  readonly readiness = new Readiness();
  /** The projects' own apps, for blocks that call them; set by compute when it runs apps. */
  appGateway: AppGateway | undefined;
  /** Where the edge records each API call and app request (platform/request-log.ts); set by the logs service. */
  requestLog: RequestLog | undefined;
  readonly tenancy: Tenancy;
  readonly meter: Meter;
  /** The operator's price list, `<data>/prices.json`. */
  readonly prices: PriceList;
  readonly limits: Limits;
  /** How long and how much of their apps' logs projects keep (log_days, log_bytes). */
  readonly appLogs: AppLogSettings;
  readonly startedAt = Date.now();
  private readonly services = new Map<string, ServiceDefinition>();
  private readonly components = new Map<Component<unknown>, unknown>();
  private loadedMasterKey: { key: MasterKey; cipher: SecretCipher } | undefined;

  constructor(
    readonly config: PlatformConfig,
    readonly log: Logger,
    readonly stores: Stores,
    services: ServiceDefinition[],
  ) {
    for (const service of services) {
      if (this.services.has(service.name)) throw new Error(`service "${service.name}" is declared twice`);
      this.services.set(service.name, service);
    }
    this.tenancy = new Tenancy(stores.control, () => [...this.services.keys()]);
    this.prices = PriceList.open(join(config.dataDir, 'prices.json'), [...this.services.values()], log);
    this.limits = new Limits(stores.quota, this.prices, log);
    this.appLogs = AppLogSettings.fromEnvironment(stores.quota);
    this.meter = new Meter(stores.usage, log, {
      intervalMs: config.usageFlushMs,
      computePrice: (runningMs, memoryMiB, requests) => this.prices.computePrice(runningMs, memoryMiB, requests),
      onComputeCharge: (projectId, priceMicros) => this.limits.charge(projectId, priceMicros),
    });
    this.readiness.expect('store');
    this.readiness.expect('components');
  }

  /** Starts every component the services declared, then metering. */
  async start(): Promise<void> {
    this.readiness.ready('store');
    for (const service of this.services.values()) {
      for (const component of service.components ?? []) {
        if (!this.components.has(component)) this.components.set(component, await component.create(this));
      }
    }
    await this.recordMasterKey();
    this.readiness.ready('components');
    this.prices.watch();
    this.limits.start();
    this.meter.start();
  }

  /** The started instance of a component a service declared. */
  use<T>(component: Component<T>): T {
    if (!this.components.has(component)) {
      throw errors.internal(`component "${component.name}" was used before it was started`);
    }
    return this.components.get(component) as T;
  }

  /**
   * The master key (ALTO_MASTER_KEY, else `<data>/master-key`, made on first use) and its cipher:
   * what every part that keeps a value at rest a copy of the database must not reveal seals it with.
   */
  masterKey(): { key: MasterKey; cipher: SecretCipher } {
    if (!this.loadedMasterKey) {
      const key = loadMasterKey(this.config.dataDir);
      this.loadedMasterKey = { key, cipher: new SecretCipher(key.key) };
    }
    return this.loadedMasterKey;
  }

  /**
   * Refuses to start when the control store recorded another master key's fingerprint: every
   * process of one cloud must seal and open with the same key, and a mismatch found here is one
   * sentence, not a decryption failure later. The fingerprint is recorded by `start()`, once the
   * blocks (the secret block checks its own) accepted the key, so a first start with a wrong key
   * after an upgrade does not record it.
   */
  async checkMasterKey(): Promise<void> {
    const recorded = await this.stores.control.getSetting(MASTER_KEY_SETTING);
    if (recorded !== undefined) this.assertMasterKey(recorded);
  }

  private async recordMasterKey(): Promise<void> {
    const { cipher } = this.masterKey();
    this.assertMasterKey(await this.stores.control.claimSetting(MASTER_KEY_SETTING, cipher.fingerprint()));
  }

  private assertMasterKey(recorded: string): void {
    const { key, cipher } = this.masterKey();
    const fingerprint = cipher.fingerprint();
    if (recorded === fingerprint) return;
    const where = key.source === 'ALTO_MASTER_KEY' ? 'ALTO_MASTER_KEY' : `the master key in ${key.path}`;
    throw new Error(
      `${where} is not the master key of this cloud: the store (${this.stores.control.kind}) was started with another one ` +
        `(fingerprint ${recorded.slice(0, 8)}…, this key's is ${fingerprint.slice(0, 8)}…). Every process sharing one store ` +
        'must run with the same ALTO_MASTER_KEY; start this one with the key the others use (or the master-key file from your backup).',
    );
  }

  /**
   * A key every process of one cloud must share, such as the space block's URL-signing key. When
   * the control store is shared (PostgreSQL), the key lives in its settings, sealed with the
   * master key: the first process to start records `candidate()` and every process uses that one.
   * Undefined on the embedded store, where the caller keeps the key in the data folder.
   */
  async sharedKey(name: string, candidate: () => Buffer): Promise<Buffer | undefined> {
    if (!this.stores.postgres) return undefined;
    const { cipher } = this.masterKey();
    const where = ['settings', name];
    const recorded = await this.stores.control.claimSetting(name, cipher.sealText(candidate().toString('hex'), where));
    return Buffer.from(cipher.openText(recorded, where), 'hex');
  }

  listServices(): ServiceDefinition[] {
    return [...this.services.values()];
  }

  findService(name: string): ServiceDefinition | undefined {
    return this.services.get(name);
  }

  findEndpoint(serviceName: string, endpointName: string): { service: ServiceDefinition; endpoint: EndpointDefinition } {
    const service = this.services.get(serviceName);
    if (!service) throw errors.notFound(`service "${serviceName}" does not exist; GET /v1/openapi.json lists every service`);
    const endpoint = Object.hasOwn(service.endpoints, endpointName) ? service.endpoints[endpointName] : undefined;
    if (!endpoint) {
      throw errors.notFound(
        `endpoint "${endpointName}" does not exist on service "${serviceName}"; it has ${Object.keys(service.endpoints).join(', ')}`,
      );
    }
    return { service, endpoint };
  }

  async close(): Promise<void> {
    await this.meter.close();
    await this.limits.close();
    this.prices.close();
    for (const instance of [...this.components.values()].reverse()) {
      const closable = instance as { close?: () => unknown };
      if (typeof closable?.close === 'function') await closable.close();
    }
    this.components.clear();
    await this.stores.close();
  }
}
