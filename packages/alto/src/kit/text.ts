/**
 * @module kit/text
 * Trimming a run of one character from the ends of a string in linear time. The regex way
 * (`text.replace(/\/+$/, '')`) retries the run from every position when the string does not end
 * with it, which is quadratic: 100 kB of slashes followed by one letter took seconds. And whether
 * text holds what not every store keeps: a NUL character or half of a surrogate pair.
 */

const NUL_OR_SURROGATE = /[\0\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `text` holds a NUL character or half of a surrogate pair (PostgreSQL refuses both as text). */
export function holdsNulOrLoneSurrogate(text: string): boolean {
  return NUL_OR_SURROGATE.test(text) && (text.includes('\0') || LONE_SURROGATE.test(text));
}

/** `text` without the run of `char` (one character) at its end. */
export function trimEnd(text: string, char: string): string {
  let end = text.length;
  while (end > 0 && text[end - 1] === char) end -= 1;
  return end === text.length ? text : text.slice(0, end);
}

/** `text` without the run of `char` (one character) at its start. */
export function trimStart(text: string, char: string): string {
  let start = 0;
  while (start < text.length && text[start] === char) start += 1;
  return start === 0 ? text : text.slice(start);
}

/** `text` without runs of `char` at either end. */
export function trimBoth(text: string, char: string): string {
  return trimStart(trimEnd(text, char), char);
}
