/**
 * @module platform/prices
 * The price list: one JSON file in the data folder (`prices.json`) that the operator edits. On
 * first start it is written from the services' own `priceMicros`, listing every endpoint, the
 * compute price per GB-second, and the free tier (a monthly credit and the limits every project
 * gets unless the operator sets others). Every amount is an integer number of micro-units
 * (1 = one millionth of the currency): prices never pass through floats.
 *
 * Alto re-reads the file every few seconds, so an edit takes effect without a restart. An edit
 * that does not validate is refused with a logged reason and the last good list stays in force:
 * a typo must not make every call free.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { writeFileAtomic } from '../kit/files.js';
import type { Logger } from '../kit/logger.js';
import { LIMIT_NAMES, type LimitName } from './limit-names.js';
import type { ServiceDefinition } from './service.js';

const Micros = z
  .number()
  .int('must be a whole number of micro-units (1 = one millionth), not a fraction')
  .min(0, 'must not be negative')
  .max(Number.MAX_SAFE_INTEGER);

/** Compute price when the operator has not set one: about what the big clouds charge. */
export const DEFAULT_GB_SECOND_MICROS = 17;

const FreeTierLimits = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((name) => [name, Micros.default(0)])) as Record<LimitName, z.ZodDefault<typeof Micros>>,
);

export const PriceFileSchema = z.strictObject({
  about: z.string().optional(),
  currency: z.string().min(1).max(12).default('USD'),
  /** Service → endpoint → price per call. Endpoints left out cost what their service declares. */
  requests: z.record(z.string(), z.record(z.string(), Micros)).default({}),
  compute: z
    .strictObject({
      /** Per GB-second of running time (memory × running time; suspended time is free). */
      gb_second_micros: Micros.default(DEFAULT_GB_SECOND_MICROS),
      /** Per request served by an app. */
      request_micros: Micros.default(0),
    })
    .default({ gb_second_micros: DEFAULT_GB_SECOND_MICROS, request_micros: 0 }),
  free_tier: z
    .strictObject({
      /** Taken off each project's cost every month. */
      monthly_credit_micros: Micros.default(0),
      /** What every project may use unless its own limits say otherwise; 0 means no limit. */
      limits: FreeTierLimits.default(Object.fromEntries(LIMIT_NAMES.map((name) => [name, 0])) as Record<LimitName, number>),
    })
    .default({ monthly_credit_micros: 0, limits: Object.fromEntries(LIMIT_NAMES.map((name) => [name, 0])) as Record<LimitName, number> }),
});

export type PriceFile = z.output<typeof PriceFileSchema>;

export const PRICES_FILE_ABOUT =
  'Alto price list. Every amount is a whole number of micro-units: 1 = one millionth of the currency ' +
  '(1000000 = 1 USD). "requests": price per call of each endpoint. "compute": price per GB-second of running ' +
  'time and per request to an app; suspended time is free. "free_tier": a credit taken off each project\'s ' +
  'monthly cost, and the limits every project gets unless set otherwise (0 = no limit). Alto re-reads this ' +
  'file within a few seconds of a change.';

/** The file written on first start: every endpoint of every service at its declared price. */
export function defaultPriceFile(services: ServiceDefinition[]): PriceFile {
  const requests: Record<string, Record<string, number>> = {};
  for (const service of [...services].sort((a, b) => a.name.localeCompare(b.name))) {
    requests[service.name] = Object.fromEntries(
      Object.keys(service.endpoints)
        .sort()
        .map((name) => [name, declaredPrice(service, name)]),
    );
  }
  return {
    about: PRICES_FILE_ABOUT,
    currency: 'USD',
    requests,
    compute: { gb_second_micros: DEFAULT_GB_SECOND_MICROS, request_micros: 0 },
    free_tier: {
      monthly_credit_micros: 0,
      limits: Object.fromEntries(LIMIT_NAMES.map((name) => [name, 0])) as Record<LimitName, number>,
    },
  };
}

function declaredPrice(service: ServiceDefinition, endpoint: string): number {
  return service.endpoints[endpoint].priceMicros ?? service.priceMicros;
}

/** `1234567` → `"1.234567"`: exact decimal text of an amount of micro-units. */
export function formatMicros(micros: number): string {
  const sign = micros < 0 ? '-' : '';
  const whole = Math.abs(micros);
  return `${sign}${Math.floor(whole / 1_000_000)}.${String(whole % 1_000_000).padStart(6, '0')}`;
}

/** Parses the file's text; throws an Error whose message names each problem and its place. */
export function parsePriceFile(text: string, path: string): PriceFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${path} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = PriceFileSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`)
      .join('; ');
    throw new Error(`${path} is not a valid price list: ${problems}`);
  }
  return parsed.data;
}

export interface PriceEntry {
  service: string;
  endpoint: string;
  priceMicros: number;
}

export class PriceList {
  private file!: PriceFile;
  private text = '';
  private requestPrices = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly path: string,
    private readonly services: ServiceDefinition[],
    private readonly log: Logger,
  ) {}

  /**
   * Reads the price list at `path`, writing the defaults there first when there is no file.
   * Throws when the file exists but is not valid: starting with prices nobody set is worse.
   */
  static open(path: string, services: ServiceDefinition[], log: Logger): PriceList {
    const list = new PriceList(path, services, log);
    if (!existsSync(path)) {
      // Two processes starting together both write the same defaults; the rename is atomic.
      writeFileAtomic(path, JSON.stringify(defaultPriceFile(services), null, 2) + '\n', 0o644);
    }
    const text = readFileSync(path, 'utf8');
    list.apply(text, parsePriceFile(text, path));
    return list;
  }

  /** Re-reads the file; a change that does not validate is logged and ignored. */
  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (error) {
      this.log.error({ err: error, path: this.path }, 'cannot read the price list; the last one read stays in force');
      return;
    }
    if (text === this.text) return;
    try {
      this.apply(text, parsePriceFile(text, this.path));
      this.log.info({ path: this.path }, 'price list reloaded');
    } catch (error) {
      this.text = text; // log a bad edit once, not every few seconds
      this.log.error({ path: this.path, problem: (error as Error).message }, 'price list edit refused; the last good one stays in force');
    }
  }

  /** Re-reads the file every `intervalMs` (the timer does not keep the process alive). */
  watch(intervalMs = 2000): void {
    this.timer = setInterval(() => this.reload(), intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private apply(text: string, file: PriceFile): void {
    const prices = new Map<string, number>();
    for (const service of this.services) {
      for (const endpoint of Object.keys(service.endpoints)) prices.set(`${service.name}/${endpoint}`, declaredPrice(service, endpoint));
    }
    for (const [service, endpoints] of Object.entries(file.requests)) {
      for (const [endpoint, price] of Object.entries(endpoints)) {
        const name = `${service}/${endpoint}`;
        if (!prices.has(name)) this.log.warn({ path: this.path, endpoint: name }, 'the price list names an endpoint that does not exist');
        else prices.set(name, price);
      }
    }
    this.file = file;
    this.text = text;
    this.requestPrices = prices;
  }

  /** Price of one call, in micro-units. */
  requestPrice(service: string, endpoint: string): number {
    return this.requestPrices.get(`${service}/${endpoint}`) ?? 0;
  }

  get currency(): string {
    return this.file.currency;
  }

  get compute(): PriceFile['compute'] {
    return this.file.compute;
  }

  get freeTier(): PriceFile['free_tier'] {
    return this.file.free_tier;
  }

  /**
   * Price of a slice of compute: running milliseconds × MiB at the GB-second price (rounded to
   * the nearest micro-unit once per slice), plus the requests it served.
   */
  computePrice(runningMs: number, memoryMiB: number, requests: number): number {
    const { gb_second_micros, request_micros } = this.file.compute;
    return Math.round((runningMs * memoryMiB * gb_second_micros) / (1000 * 1024)) + requests * request_micros;
  }

  /** Every endpoint's price, sorted by service and endpoint. */
  entries(): PriceEntry[] {
    return [...this.requestPrices.entries()]
      .map(([name, priceMicros]) => {
        const slash = name.indexOf('/');
        return { service: name.slice(0, slash), endpoint: name.slice(slash + 1), priceMicros };
      })
      .sort((a, b) => a.service.localeCompare(b.service) || a.endpoint.localeCompare(b.endpoint));
  }
}
