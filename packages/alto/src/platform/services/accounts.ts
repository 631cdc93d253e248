/**
 * @module platform/services/accounts
 * `accounts/*`: open sign-up for a shared instance (`alto up --open-signup`) and login with
 * email and password. Both return an owner key for the account, which manages its projects and
 * keys. Passwords are hashed with argon2id. Login fails the same way, at the same cost, for an
 * unknown email and a wrong password, and failed logins are limited per account and per client
 * address as the user block's are (the counts kept in the users store, in a namespace no
 * project can have).
 */
import { hash } from '@node-rs/argon2';
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { FailedLoginLimiter, verifyPasswordEvenIfUnknown, type FailedLoginLimits } from '../failed-logins.js';
import { DEFAULT_PROJECT } from '../tenancy.js';
import { component, defineService, endpoint, publicEndpoint } from '../service.js';

/** Where the accounts' failed logins are counted: not `<project>/<environment>`, so no project's deletion or data reaches it. */
const ACCOUNTS_NAMESPACE = '_accounts';

export const ACCOUNT_LOGIN_LIMITS: FailedLoginLimits = { perAccount: 5, perAddress: 20, windowMs: 15 * 60 * 1000 };

/**
 * The accounts' failed-login limiter. The counts are kept in the users store, which is on
 * PostgreSQL with `--store` as the accounts are, so every process sharing the store counts them
 * together; old counts are purged every minute.
 */
const accountLogins = component('accounts.failed-logins', (platform) => {
  const store = platform.stores.users;
  const timer = setInterval(() => {
    store.purgeExpired(Date.now(), Date.now() - ACCOUNT_LOGIN_LIMITS.windowMs).catch((error: unknown) => {
      platform.log.warn({ err: error }, 'accounts: purging old failed logins failed; retrying at the next interval');
    });
  }, 60_000);
  timer.unref();
  const limiter = new FailedLoginLimiter(store, ACCOUNT_LOGIN_LIMITS);
  return { limiter, close: () => clearInterval(timer) };
});

const Credentials = z.object({
  email: z.email().max(254).describe('email address'),
  password: z.string().min(10, 'password: use at least 10 characters').max(256),
});

const OwnerKey = z.object({
  account_id: z.string(),
  key: z.string().describe('an owner key for the account; store it now, it is not shown again'),
});

export const accountsService = defineService({
  name: 'accounts',
  description: 'Accounts own projects. Sign-up is open only when the operator starts Alto with --open-signup.',
  priceMicros: 0,
  components: [accountLogins],
  endpoints: {
    Signup: publicEndpoint({
      description: 'Create an account with email and password; returns an owner key and a "default" project.',
      request: Credentials,
      response: OwnerKey.extend({ project: z.string() }),
      example: { email: 'ada@example.com', password: 'correct horse battery' },
      async handler(request, context) {
        if (!context.platform.config.openSignup) {
          throw errors.forbidden('sign-up is closed on this instance; ask its operator for a key');
        }
        const { tenancy } = context.platform;
        const email = request.email.toLowerCase();
        const { accountId, project } = await tenancy.createAccount(email, await hash(request.password));
        const owner = await tenancy.generateOwnerKey(accountId, project, 'owner key from sign-up');
        return { account_id: accountId, key: owner.secret, project: DEFAULT_PROJECT };
      },
    }),
    Login: publicEndpoint({
      description:
        'Log in with email and password; returns a new owner key for the account. 401 for an unknown email and a wrong ' +
        'password alike; 429 after repeated failures for one account or from one address.',
      request: Credentials.extend({ password: z.string().min(1).max(256) }),
      response: OwnerKey,
      example: { email: 'ada@example.com', password: 'correct horse battery' },
      async handler(request, context) {
        const { tenancy, stores } = context.platform;
        const { limiter } = context.platform.use(accountLogins);
        const email = request.email.toLowerCase();
        const account = await stores.control.findAccountByEmail(email);
        const subjects = {
          identifier: `login:email:${email}`,
          address: `address:${context.clientAddress ?? 'unknown'}`,
          account: account && `account:${account.id}`,
        };
        await limiter.check(ACCOUNTS_NAMESPACE, subjects);
        // Verified whether or not the account exists (against a decoy hash when it does not), so
        // the time taken does not tell which.
        const valid = await verifyPasswordEvenIfUnknown(account?.passwordHash, request.password);
        if (!account || !valid) {
          await limiter.recordFailure(ACCOUNTS_NAMESPACE, subjects);
          throw errors.unauthorized('email or password is wrong');
        }
        await limiter.recordSuccess(ACCOUNTS_NAMESPACE, subjects);
        // The owner key needs a project; bring "default" back if the owner deleted it.
        const project =
          (await stores.control.findProject(account.id, DEFAULT_PROJECT)) ??
          (await tenancy.createProject(account.id, DEFAULT_PROJECT));
        const owner = await tenancy.generateOwnerKey(account.id, project, 'owner key from login');
        return { account_id: account.id, key: owner.secret };
      },
    }),
  },
});
