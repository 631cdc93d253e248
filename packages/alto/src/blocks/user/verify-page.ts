/**
 * @module blocks/user/verify-page
 * `/user/verify`, where the verification email's {{link}} points. GET shows a page with one
 * button; only its POST uses the token. Mail scanners that open every link in a message (GET)
 * would otherwise spend the single-use token before the person clicks. After the POST the
 * browser goes to the `redirect_url` (or `failure_redirect_url`) given to SendVerificationEmail,
 * or is shown a short page when none was given.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errors, isAltoError } from '../../kit/errors.js';
import type { Platform } from '../../platform/platform.js';
import type { HttpRoute } from '../../platform/service.js';
import type { UserBlock } from './users.js';

export const VERIFY_PATH = '/user/verify';

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** No caching, no scripts, and no Referer: the page's URL holds the token. */
const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
  'x-frame-options': 'DENY',
};

function page(response: ServerResponse, status: number, title: string, body: string): void {
  const html =
    `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
    `<title>${escapeHtml(title)}</title><style>body{font:16px system-ui,sans-serif;max-width:32em;margin:4em auto;padding:0 1em}` +
    `button{font:inherit;padding:.6em 1.2em}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
  response.writeHead(status, { ...PAGE_HEADERS, 'content-length': Buffer.byteLength(html) });
  response.end(html);
}

async function drain(request: IncomingMessage): Promise<void> {
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw errors.payloadTooLarge('the form is larger than 64 KiB');
  }
}

export function verificationPage(useBlock: (platform: Platform) => UserBlock): HttpRoute {
  return {
    prefix: VERIFY_PATH,
    methods: ['GET', 'POST'],
    description: 'The page a verification email links to: GET shows a button, its POST verifies the address and redirects.',
    async handle(request, response, url, platform) {
      if (url.pathname !== VERIFY_PATH) {
        page(response, 404, 'Not found', '<p>There is nothing at this address.</p>');
        return;
      }
      const namespace = url.searchParams.get('ns') ?? '';
      const token = url.searchParams.get('token') ?? '';
      if (request.method === 'GET') {
        const action = `${VERIFY_PATH}?${new URLSearchParams({ ns: namespace, token })}`;
        page(
          response,
          200,
          'Verify your email address',
          `<form method="post" action="${escapeHtml(action)}"><p>Confirm that this email address is yours.</p>` +
            `<button type="submit">Verify my address</button></form>`,
        );
        return;
      }
      try {
        await drain(request);
      } catch (error) {
        if (!isAltoError(error)) throw error;
        page(response, error.status, 'This request is not valid', `<p>${escapeHtml(error.detail)}</p>`);
        return;
      }
      const outcome = await useBlock(platform).verifyEmail(namespace, token);
      const target = outcome.verified ? outcome.redirectUrl : outcome.failureRedirectUrl;
      if (target) {
        response.writeHead(303, { location: target, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'content-length': 0 });
        response.end();
      } else if (outcome.verified) {
        page(response, 200, 'Email address verified', '<p>Thank you: your email address is verified. You can close this page.</p>');
      } else {
        page(response, 400, 'This link does not work', '<p>The link was already used or has expired. Ask for a new verification email.</p>');
      }
    },
  };
}
