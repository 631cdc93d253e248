/**
 * @module platform/services/usage
 * `usage/*`: what a project used and what it costs. `Read` gives daily totals by key, service
 * and endpoint (and compute by app); `Summary` the month with its cost and the limits in force;
 * `Prices` the operator's price list (`prices.json`), public, as a plain list.
 */
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { dayOf } from '../../store/usage.js';
import { monthOf } from '../limits.js';
import { formatMicros } from '../prices.js';
import { defineService, endpoint, publicEndpoint, type CallContext } from '../service.js';
import { ProjectLimits } from './limits-schema.js';

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;
const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;
/** The longest range `usage/Read` answers in one call. */
const MAX_READ_DAYS = 400;

const Day = z.string().regex(DAY, 'expected a day written YYYY-MM-DD');
const ProjectField = z
  .string()
  .optional()
  .describe("project name; default: the key's own project (a project key may read only its own)");

/** The project a usage call is about: the caller's own, or one of its account's for owners. */
async function projectFor(context: CallContext, name: string | undefined): Promise<{ id: string; name: string }> {
  const tenant = context.tenant;
  if (!name || name === tenant.projectName) return { id: tenant.projectId, name: tenant.projectName };
  if (tenant.role === 'project') {
    throw errors.forbidden(`a project key reads only its own project's usage ("${tenant.projectName}"); use an owner or admin key for "${name}"`);
  }
  const project = await context.platform.tenancy.findProject(tenant.accountId, name);
  return { id: project.id, name: project.name };
}

const UsageRow = z
  .object({
    day: z.string().describe('UTC day, YYYY-MM-DD'),
    key: z.string().describe('id of the key that made the calls'),
    service: z.string(),
    endpoint: z.string(),
    calls: z.number().int(),
    errors: z.number().int().describe('calls answered with status 400 or more (not charged)'),
    bytes_in: z.number().int(),
    bytes_out: z.number().int(),
    price_micros: z.number().int().describe('cost of these calls in micro-units'),
  })
  .meta({ id: 'UsageRow' });

const ComputeRow = z
  .object({
    day: z.string(),
    app: z.string(),
    running_ms: z.number().int().describe('milliseconds instances ran (suspended time is free)'),
    mib_ms: z.number().int().describe('running milliseconds × MiB of memory; 1024000 make one GB-second'),
    requests: z.number().int(),
    price_micros: z.number().int(),
  })
  .meta({ id: 'ComputeUsageRow' });

const EndpointTotal = z.object({
  service: z.string(),
  endpoint: z.string(),
  calls: z.number().int(),
  errors: z.number().int(),
  price_micros: z.number().int(),
});

const PriceRow = z.object({
  service: z.string(),
  endpoint: z.string(),
  price_micros: z.number().int().describe('price per call in micro-units'),
  price: z.string().describe('the same as a decimal amount of the currency'),
});

export const usageService = defineService({
  name: 'usage',
  description: 'What a project used and what it costs: daily usage, the month\'s bill, and the price list.',
  priceMicros: 0,
  endpoints: {
    Read: endpoint({
      description:
        'Daily usage of a project by key, service and endpoint (and compute by app), filtered by key, service, endpoint and days. ' +
        'Calls of the last second may not be written yet.',
      request: z.object({
        project: ProjectField,
        key: z.string().optional().describe('only calls made with this key id'),
        service: z.string().optional().describe('only calls to this service'),
        endpoint: z.string().optional().describe('only calls to this endpoint'),
        from: Day.optional().describe('first day, YYYY-MM-DD (UTC); default: the first of this month'),
        to: Day.optional().describe('last day, included; default: today'),
      }),
      response: z.object({
        project: z.string(),
        from: z.string(),
        to: z.string(),
        usage: z.array(UsageRow),
        compute: z.array(ComputeRow),
      }),
      example: { service: 'db', from: '2025-01-01', to: '2025-01-31' },
      async handler(request, context) {
        const project = await projectFor(context, request.project);
        const today = dayOf(Date.now());
        const from = request.from ?? `${today.slice(0, 7)}-01`;
        const to = request.to ?? today;
        if (from > to) throw errors.badRequest(`from (${from}) is after to (${to})`);
        const days = (Date.parse(to) - Date.parse(from)) / 86_400_000 + 1;
        if (days > MAX_READ_DAYS) throw errors.badRequest(`from..to spans ${days} days; ask for at most ${MAX_READ_DAYS} at a time`);
        await context.platform.meter.flush();
        const { usage } = context.platform.stores;
        const rows = await usage.readUsage({
          projectId: project.id,
          fromDay: from,
          toDay: to,
          keyId: request.key,
          service: request.service,
          endpoint: request.endpoint,
        });
        // Compute has no key, service or endpoint: asked for those, it is left out.
        const wantsCompute = !request.key && !request.service && !request.endpoint;
        const compute = wantsCompute ? await usage.readComputeUsage({ projectId: project.id, fromDay: from, toDay: to }) : [];
        return {
          project: project.name,
          from,
          to,
          usage: rows.map((row) => ({
            day: row.day,
            key: row.keyId,
            service: row.service,
            endpoint: row.endpoint,
            calls: row.calls,
            errors: row.errors,
            bytes_in: row.bytesIn,
            bytes_out: row.bytesOut,
            price_micros: row.priceMicros,
          })),
          compute: compute.map((row) => ({
            day: row.day,
            app: row.app,
            running_ms: row.runningMs,
            mib_ms: row.mibMs,
            requests: row.requests,
            price_micros: row.priceMicros,
          })),
        };
      },
    }),
    Summary: endpoint({
      description: "A month's usage of a project (this month by default): calls per endpoint, compute, cost, free credit, what is due, and the limits in force.",
      request: z.object({
        project: ProjectField,
        month: z.string().regex(MONTH, 'expected a month written YYYY-MM').optional().describe('YYYY-MM (UTC); default: this month'),
      }),
      response: z.object({
        project: z.string(),
        month: z.string(),
        currency: z.string(),
        calls: z.number().int(),
        errors: z.number().int(),
        bytes_in: z.number().int(),
        bytes_out: z.number().int(),
        endpoints: z.array(EndpointTotal),
        compute: z.object({
          running_ms: z.number().int(),
          mib_ms: z.number().int(),
          requests: z.number().int(),
          price_micros: z.number().int(),
        }),
        requests_micros: z.number().int().describe('cost of API calls'),
        compute_micros: z.number().int().describe('cost of compute'),
        total_micros: z.number().int().describe('requests_micros + compute_micros'),
        free_credit_micros: z.number().int().describe("the free tier's monthly credit"),
        due_micros: z.number().int().describe('total_micros less the free credit, never below 0'),
        due: z.string().describe('due_micros as a decimal amount of the currency'),
        limits: ProjectLimits,
      }),
      example: { month: '2025-01' },
      async handler(request, context) {
        const project = await projectFor(context, request.project);
        const month = request.month ?? monthOf(Date.now());
        const fromDay = `${month}-01`;
        const toDay = `${month}-31`; // days are text: every day of the month sorts at or before this
        await context.platform.meter.flush();
        const { usage } = context.platform.stores;
        const rows = await usage.readUsage({ projectId: project.id, fromDay, toDay });
        const computeRows = await usage.readComputeUsage({ projectId: project.id, fromDay, toDay });

        const byEndpoint = new Map<string, z.infer<typeof EndpointTotal>>();
        const totals = { calls: 0, errors: 0, bytes_in: 0, bytes_out: 0, requests_micros: 0 };
        for (const row of rows) {
          const name = `${row.service}/${row.endpoint}`;
          const total = byEndpoint.get(name) ?? { service: row.service, endpoint: row.endpoint, calls: 0, errors: 0, price_micros: 0 };
          total.calls += row.calls;
          total.errors += row.errors;
          total.price_micros += row.priceMicros;
          byEndpoint.set(name, total);
          totals.calls += row.calls;
          totals.errors += row.errors;
          totals.bytes_in += row.bytesIn;
          totals.bytes_out += row.bytesOut;
          totals.requests_micros += row.priceMicros;
        }
        const compute = { running_ms: 0, mib_ms: 0, requests: 0, price_micros: 0 };
        for (const row of computeRows) {
          compute.running_ms += row.runningMs;
          compute.mib_ms += row.mibMs;
          compute.requests += row.requests;
          compute.price_micros += row.priceMicros;
        }
        const { prices, limits } = context.platform;
        const total = totals.requests_micros + compute.price_micros;
        const credit = prices.freeTier.monthly_credit_micros;
        const due = Math.max(0, total - credit);
        return {
          project: project.name,
          month,
          currency: prices.currency,
          calls: totals.calls,
          errors: totals.errors,
          bytes_in: totals.bytes_in,
          bytes_out: totals.bytes_out,
          endpoints: [...byEndpoint.values()].sort((a, b) => a.service.localeCompare(b.service) || a.endpoint.localeCompare(b.endpoint)),
          compute,
          requests_micros: totals.requests_micros,
          compute_micros: compute.price_micros,
          total_micros: total,
          free_credit_micros: credit,
          due_micros: due,
          due: formatMicros(due),
          limits: await limits.projectLimits(project.id),
        };
      },
    }),
    Prices: publicEndpoint({
      description: "The operator's price list: the price of every endpoint, of compute, and the free tier. No key needed.",
      request: z.object({}),
      response: z.object({
        currency: z.string(),
        unit: z.string(),
        requests: z.array(PriceRow),
        compute: z.object({
          gb_second_micros: z.number().int().describe('per GB-second of running time (memory × time); suspended time is free'),
          request_micros: z.number().int().describe('per request served by an app'),
        }),
        free_tier: z.object({
          monthly_credit_micros: z.number().int().describe("taken off each project's cost every month"),
          limits: ProjectLimits,
        }),
      }),
      example: {},
      handler(_request, context) {
        const { prices } = context.platform;
        prices.reload(); // serve an edit at once, not at the next periodic check
        return {
          currency: prices.currency,
          unit: 'micro-units: 1 = one millionth of the currency, 1000000 = 1 ' + prices.currency,
          requests: prices.entries().map((entry) => ({
            service: entry.service,
            endpoint: entry.endpoint,
            price_micros: entry.priceMicros,
            price: formatMicros(entry.priceMicros),
          })),
          compute: { gb_second_micros: prices.compute.gb_second_micros, request_micros: prices.compute.request_micros },
          free_tier: { monthly_credit_micros: prices.freeTier.monthly_credit_micros, limits: { ...prices.freeTier.limits } },
        };
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    // Usage records stay: they are the project's bill. Its limit settings go.
    await platform.limits.deleteProjectLimits(projectId);
  },
});
