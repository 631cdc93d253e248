/**
 * @module blocks/cron/expression
 * Cron expressions and their next fire time, in UTC. Standard 5-field syntax (minute hour
 * day-of-month month day-of-week) with `*`, lists, ranges, steps, month and weekday names, and
 * the `@hourly`-style macros. Extension: a 6-field form whose first field is the second, for
 * jobs that run more often than once a minute (and for tests that cannot wait minutes).
 * Day rules follow Vixie cron: when both day fields are restricted, a day matching either one
 * fires; a field starting with `*` (including `*\/2`) counts as unrestricted for that rule.
 */
import { errors } from '../../kit/errors.js';

export interface CronSchedule {
  source: string;
  hasSeconds: boolean;
  seconds: Set<number>;
  minutes: Set<number>;
  hours: Set<number>;
  daysOfMonth: Set<number>;
  months: Set<number>;
  /** 0 = Sunday; 7 is folded into 0. */
  daysOfWeek: Set<number>;
  daysOfMonthRestricted: boolean;
  daysOfWeekRestricted: boolean;
}

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};
const MONTH_NAMES = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

interface FieldSpec {
  label: string;
  min: number;
  max: number;
  names?: string[];
  /** The number the first name stands for (1 for months, 0 for weekdays). */
  namesFrom?: number;
}
const SECOND: FieldSpec = { label: 'second', min: 0, max: 59 };
const MINUTE: FieldSpec = { label: 'minute', min: 0, max: 59 };
const HOUR: FieldSpec = { label: 'hour', min: 0, max: 23 };
const DAY_OF_MONTH: FieldSpec = { label: 'day of month', min: 1, max: 31 };
const MONTH: FieldSpec = { label: 'month', min: 1, max: 12, names: MONTH_NAMES, namesFrom: 1 };
const DAY_OF_WEEK: FieldSpec = { label: 'day of week', min: 0, max: 7, names: DAY_NAMES, namesFrom: 0 };

/** No schedule looks further ahead than this for its next time (covers 29 February in leap years). */
const SEARCH_YEARS = 9;

function invalid(source: string, why: string) {
  return errors.badRequest(
    `interval: "${source}" is not a valid cron expression: ${why}; use 5 fields "minute hour day-of-month month day-of-week" (UTC), e.g. "*/5 * * * *", or 6 with seconds first`,
  );
}

function parseValue(text: string, spec: FieldSpec, source: string): number {
  const lower = text.toLowerCase();
  const nameIndex = spec.names?.indexOf(lower) ?? -1;
  if (nameIndex >= 0) return nameIndex + (spec.namesFrom ?? 0);
  if (!/^\d+$/.test(text)) throw invalid(source, `"${text}" is not a number in the ${spec.label} field`);
  const value = Number(text);
  if (value < spec.min || value > spec.max) {
    throw invalid(source, `${value} is out of range for the ${spec.label} field (${spec.min}-${spec.max})`);
  }
  return value;
}

function parseField(text: string, spec: FieldSpec, source: string): Set<number> {
  const values = new Set<number>();
  for (const part of text.split(',')) {
    if (part === '') throw invalid(source, `empty list item in the ${spec.label} field`);
    const [range, stepText, extra] = part.split('/');
    if (extra !== undefined) throw invalid(source, `"${part}" has more than one "/" in the ${spec.label} field`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) === 0) {
        throw invalid(source, `step "${stepText}" in the ${spec.label} field must be a whole number of at least 1`);
      }
      step = Number(stepText);
    }
    let low: number;
    let high: number;
    if (range === '*') {
      low = spec.min;
      high = spec.max;
    } else if (range.includes('-')) {
      const [lowText, highText, more] = range.split('-');
      if (more !== undefined || !lowText || !highText) throw invalid(source, `"${range}" is not a range in the ${spec.label} field`);
      low = parseValue(lowText, spec, source);
      high = parseValue(highText, spec, source);
      if (low > high) throw invalid(source, `range "${range}" in the ${spec.label} field runs backwards`);
    } else {
      low = parseValue(range, spec, source);
      // `5/15` means from 5 to the end of the field in steps of 15.
      high = stepText === undefined ? low : spec.max;
    }
    for (let value = low; value <= high; value += step) values.add(value);
  }
  return values;
}

/** Parses an expression; throws a 400 that says what is wrong with it. */
export function parseCron(expression: string): CronSchedule {
  const source = expression.trim();
  if (source === '') throw invalid(expression, 'it is empty');
  // Own keys only: "__proto__" or "constructor" is not a macro.
  const expanded = Object.hasOwn(MACROS, source.toLowerCase()) ? MACROS[source.toLowerCase()] : source;
  if (expanded.startsWith('@')) throw invalid(source, `unknown macro; use one of ${Object.keys(MACROS).join(', ')}`);
  const fields = expanded.split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) throw invalid(source, `it has ${fields.length} fields, not 5 (or 6 with seconds)`);
  const hasSeconds = fields.length === 6;
  const [secondText, minuteText, hourText, domText, monthText, dowText] = hasSeconds ? fields : ['0', ...fields];
  const daysOfWeek = parseField(dowText, DAY_OF_WEEK, source);
  if (daysOfWeek.delete(7)) daysOfWeek.add(0);
  return {
    source,
    hasSeconds,
    seconds: parseField(secondText, SECOND, source),
    minutes: parseField(minuteText, MINUTE, source),
    hours: parseField(hourText, HOUR, source),
    daysOfMonth: parseField(domText, DAY_OF_MONTH, source),
    months: parseField(monthText, MONTH, source),
    daysOfWeek,
    daysOfMonthRestricted: !domText.startsWith('*'),
    daysOfWeekRestricted: !dowText.startsWith('*'),
  };
}

function dayMatches(schedule: CronSchedule, date: Date): boolean {
  const byMonthDay = schedule.daysOfMonth.has(date.getUTCDate());
  const byWeekDay = schedule.daysOfWeek.has(date.getUTCDay());
  if (schedule.daysOfMonthRestricted && schedule.daysOfWeekRestricted) return byMonthDay || byWeekDay;
  if (schedule.daysOfMonthRestricted) return byMonthDay;
  if (schedule.daysOfWeekRestricted) return byWeekDay;
  return true;
}

/**
 * The first time (milliseconds since the epoch, on a whole second) strictly after `afterMs` that
 * the schedule fires, or undefined when it never does (e.g. "0 0 30 2 *").
 */
export function nextFireTime(schedule: CronSchedule, afterMs: number): number | undefined {
  let time = Math.floor(afterMs / 1000) * 1000 + 1000;
  const limit = afterMs + SEARCH_YEARS * 366 * 86_400_000;
  while (time <= limit) {
    const date = new Date(time);
    const year = date.getUTCFullYear();
    const month = date.getUTCMonth();
    const day = date.getUTCDate();
    const hour = date.getUTCHours();
    const minute = date.getUTCMinutes();
    if (!schedule.months.has(month + 1)) {
      time = Date.UTC(year, month + 1, 1);
    } else if (!dayMatches(schedule, date)) {
      time = Date.UTC(year, month, day + 1);
    } else if (!schedule.hours.has(hour)) {
      time = Date.UTC(year, month, day, hour + 1);
    } else if (!schedule.minutes.has(minute)) {
      time = Date.UTC(year, month, day, hour, minute + 1);
    } else if (!schedule.seconds.has(date.getUTCSeconds())) {
      time += 1000;
    } else {
      return time;
    }
  }
  return undefined;
}
