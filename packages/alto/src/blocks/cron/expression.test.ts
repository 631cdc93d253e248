import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AltoError } from '../../kit/errors.js';
import { nextFireTime, parseCron } from './expression.js';

function next(expression: string, after: string): string | undefined {
  const time = nextFireTime(parseCron(expression), Date.parse(after));
  return time === undefined ? undefined : new Date(time).toISOString();
}

function refused(expression: string, detail: RegExp): void {
  assert.throws(
    () => parseCron(expression),
    (error: unknown) => error instanceof AltoError && error.status === 400 && /^interval: /.test(error.detail) && detail.test(error.detail),
    expression,
  );
}

test('fields: *, lists, ranges, steps, names, and 7 as Sunday', () => {
  const schedule = parseCron('0,30 9-17/4 * jan,Mar-may 1-5');
  assert.deepEqual([...schedule.minutes], [0, 30]);
  assert.deepEqual([...schedule.hours], [9, 13, 17]);
  assert.deepEqual([...schedule.months], [1, 3, 4, 5]);
  assert.deepEqual([...schedule.daysOfWeek], [1, 2, 3, 4, 5]);
  assert.deepEqual([...schedule.seconds], [0]);
  assert.deepEqual([...parseCron('5/20 * * * *').minutes], [5, 25, 45]);
  assert.deepEqual([...parseCron('* * * * SUN,7').daysOfWeek], [0]);
  assert.equal(parseCron('*/1 * * * * *').hasSeconds, true);
  assert.equal(parseCron('@daily').source, '@daily');
});

test('bad expressions are a 400 that says what is wrong', () => {
  refused('', /it is empty/);
  refused('* * * *', /4 fields, not 5/);
  refused('* * * * * * *', /7 fields/);
  refused('60 * * * *', /60 is out of range for the minute field \(0-59\)/);
  refused('* 24 * * *', /hour field/);
  refused('* * 0 * *', /day of month field \(1-31\)/);
  refused('* * * 13 *', /month field/);
  refused('* * * * 8', /day of week field/);
  refused('*/0 * * * *', /step "0"/);
  refused('5-1 * * * *', /runs backwards/);
  refused('a * * * *', /"a" is not a number/);
  refused('1,,2 * * * *', /empty list item/);
  refused('@sometimes', /unknown macro/);
});

test('next fire time: minutes, hours, and rolling over days, months and years (UTC)', () => {
  assert.equal(next('* * * * *', '2026-03-01T10:00:00Z'), '2026-03-01T10:01:00.000Z');
  assert.equal(next('* * * * *', '2026-03-01T10:00:30.500Z'), '2026-03-01T10:01:00.000Z');
  assert.equal(next('*/15 * * * *', '2026-03-01T10:07:00Z'), '2026-03-01T10:15:00.000Z');
  assert.equal(next('30 2 * * *', '2026-03-01T10:00:00Z'), '2026-03-02T02:30:00.000Z');
  assert.equal(next('0 0 1 * *', '2026-12-15T00:00:00Z'), '2027-01-01T00:00:00.000Z');
  assert.equal(next('@yearly', '2026-01-01T00:00:00Z'), '2027-01-01T00:00:00.000Z');
  assert.equal(next('0 12 31 * *', '2026-04-01T00:00:00Z'), '2026-05-31T12:00:00.000Z', 'April has no 31st');
});

test('next fire time: month and day-of-week rules', () => {
  // 2026-03-01 is a Sunday.
  assert.equal(next('0 9 * * mon', '2026-03-01T00:00:00Z'), '2026-03-02T09:00:00.000Z');
  assert.equal(next('0 9 * * 1-5', '2026-03-06T10:00:00Z'), '2026-03-09T09:00:00.000Z', 'Friday after 9 goes to Monday');
  assert.equal(next('0 0 * feb sun', '2026-03-01T00:00:00Z'), '2027-02-07T00:00:00.000Z');
  // Both day fields restricted: either matches (the 13th, or any Friday).
  assert.equal(next('0 0 13 * fri', '2026-03-01T00:00:00Z'), '2026-03-06T00:00:00.000Z');
  assert.equal(next('0 0 13 * fri', '2026-03-10T00:00:00Z'), '2026-03-13T00:00:00.000Z');
  // A day-of-week field starting with * does not widen the day-of-month rule.
  assert.equal(next('0 0 13 * */2', '2026-03-01T00:00:00Z'), '2026-03-13T00:00:00.000Z');
  assert.equal(next('0 0 29 2 *', '2026-03-01T00:00:00Z'), '2028-02-29T00:00:00.000Z', 'leap day');
  assert.equal(next('0 0 30 2 *', '2026-03-01T00:00:00Z'), undefined, 'never');
});

test('next fire time with the seconds extension', () => {
  assert.equal(next('*/1 * * * * *', '2026-03-01T10:00:00.400Z'), '2026-03-01T10:00:01.000Z');
  assert.equal(next('*/20 * * * * *', '2026-03-01T10:00:41Z'), '2026-03-01T10:01:00.000Z');
  assert.equal(next('30 0 12 * * *', '2026-03-01T12:00:30Z'), '2026-03-02T12:00:30.000Z');
});
