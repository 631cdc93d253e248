/**
 * @module blocks/cron/addresses
 * Where a job's callback may go: a public http(s) URL, checked when the job is scheduled and
 * again, through the outbound guard (kit/outbound-guard), on the very connection each callback
 * makes; or one of the project's own apps (`app://web/hooks/nightly`).
 * ALTO_ALLOW_PRIVATE_CALLBACKS=1 lifts the address rule for local development.
 */
import { errors } from '../../kit/errors.js';
import { privateTargetsAllowed, resolveOutbound } from '../../kit/outbound-guard.js';

export function privateCallbacksAllowed(): boolean {
  return privateTargetsAllowed();
}

/** Checks a callback URL's form, and unless allowed, that its host resolves to public addresses only. */
export async function checkCallbackUrl(callback: string, allowPrivate: boolean): Promise<string> {
  let url: URL;
  try {
    url = new URL(callback.trim());
  } catch {
    throw errors.badRequest(`callback: ${JSON.stringify(callback)} is not an absolute URL; give e.g. https://example.com/hooks/cron`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw errors.badRequest(`callback: only http and https URLs can be called, not "${url.protocol}" URLs`);
  }
  if (url.username || url.password) throw errors.badRequest('callback: must not carry a user name or password');
  if (allowPrivate) return url.href;
  try {
    await resolveOutbound(url.hostname);
  } catch (error) {
    throw errors.badRequest(`callback: ${(error as Error).message}`);
  }
  return url.href;
}

const APP_CALLBACK = /^app:\/\/([^/?#]*)(.*)$/i;
const APP_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

/** Whether a callback names one of the project's own apps (`app://web/hooks/nightly`). */
export function isAppCallback(callback: string): boolean {
  return /^app:\/\//i.test(callback.trim());
}

/** The app's name and the path (with query) of an `app://` callback, checked. */
export function parseAppCallback(callback: string): { name: string; path: string } {
  const match = APP_CALLBACK.exec(callback.trim());
  const name = match?.[1].toLowerCase() ?? '';
  if (!match || !APP_NAME.test(name)) {
    throw errors.badRequest(
      `callback: ${JSON.stringify(callback)} does not name an app; write app://<app name>/<path>, e.g. app://web/hooks/nightly`,
    );
  }
  const rest = match[2];
  if (rest !== '' && !rest.startsWith('/') && !rest.startsWith('?')) throw errors.badRequest('callback: after the app name comes its path, starting with "/"');
  const path = rest.startsWith('/') ? rest : `/${rest}`;
  if (/[\s#]/.test(path)) throw errors.badRequest('callback: the path of an app callback may not hold spaces or a "#" fragment');
  return { name, path };
}
