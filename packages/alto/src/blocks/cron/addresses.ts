/**
 * @module blocks/cron/addresses
 * Keeps callbacks off the server's own network: loopback, private, link-local and unique-local
 * addresses are refused, both when a job is scheduled and, through a checking DNS lookup, on
 * the very connection a callback makes (so a host name cannot be re-pointed at 127.0.0.1 after
 * it was checked). ALTO_ALLOW_PRIVATE_CALLBACKS=1 lifts the rule for local development.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { promises as dns } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { errors } from '../../kit/errors.js';

const privateRanges = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['127.0.0.0', 8],
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
  ['169.254.0.0', 16],
  ['100.64.0.0', 10],
] as const) {
  privateRanges.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::1', 128],
  ['::', 128],
  ['fc00::', 7],
  ['fe80::', 10],
] as const) {
  privateRanges.addSubnet(network, prefix, 'ipv6');
}

export function privateCallbacksAllowed(): boolean {
  return process.env.ALTO_ALLOW_PRIVATE_CALLBACKS === '1';
}

/** True for an address a callback must not reach (IPv4-mapped IPv6 is judged as IPv4). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return privateRanges.check(mapped[1], 'ipv4');
  const family = isIP(address);
  if (family === 0) return true;
  return privateRanges.check(address, family === 4 ? 'ipv4' : 'ipv6');
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
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: string[];
  try {
    addresses = isIP(host) ? [host] : (await dns.lookup(host, { all: true })).map((entry) => entry.address);
  } catch {
    throw errors.badRequest(`callback: the host "${host}" does not resolve; give a callback on a public host`);
  }
  const refused = addresses.find(isPrivateAddress);
  if (refused !== undefined) {
    throw errors.badRequest(
      `callback: "${host}" is (or resolves to) ${refused}, a loopback or private address; callbacks must go to a public host`,
    );
  }
  return url.href;
}

/** A DNS lookup for http(s).request that fails when the connection would reach a private address. */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, '', 0);
    const refused = addresses.find((entry) => isPrivateAddress(entry.address));
    if (refused) {
      return callback(new Error(`${hostname} resolves to ${refused.address}, a loopback or private address`), '', 0);
    }
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    return callback(null, addresses[0].address, addresses[0].family);
  });
};

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
