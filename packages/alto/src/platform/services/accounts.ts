/**
 * @module platform/services/accounts
 * `accounts/*`: open sign-up for a shared instance (`alto up --open-signup`) and login with
 * email and password. Both return an owner key for the account, which manages its projects and
 * keys. Passwords are hashed with argon2id.
 */
import { hash, verify } from '@node-rs/argon2';
import { z } from 'zod';
import { errors } from '../../kit/errors.js';
import { DEFAULT_PROJECT } from '../tenancy.js';
import { defineService, endpoint } from '../service.js';

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
  endpoints: {
    Signup: endpoint({
      description: 'Create an account with email and password; returns an owner key and a "default" project.',
      access: 'public',
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
    Login: endpoint({
      description: 'Log in with email and password; returns a new owner key for the account.',
      access: 'public',
      request: Credentials.extend({ password: z.string().min(1).max(256) }),
      response: OwnerKey,
      example: { email: 'ada@example.com', password: 'correct horse battery' },
      async handler(request, context) {
        const { tenancy, stores } = context.platform;
        const account = await stores.control.findAccountByEmail(request.email.toLowerCase());
        const valid = account?.passwordHash ? await verify(account.passwordHash, request.password) : false;
        if (!account || !valid) throw errors.unauthorized('email or password is wrong');
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
