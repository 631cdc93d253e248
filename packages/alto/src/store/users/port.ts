/**
 * @module store/users/port
 * The users storage port: a project's end-user accounts (with their password hashes), their
 * sessions, their one-time tokens (email verification, password reset, magic link), counted
 * attempts for rate limits, and the project's mail templates. Adapters: `sqlite.ts` (embedded)
 * and `postgres.ts` (scale-out). Every tenant method takes the namespace first, so one project
 * can never name another's users.
 *
 * The store never sees a session id or a token, only their SHA-256 hashes: a copy of the
 * database does not let anyone log in as a user or use a pending reset.
 */

export interface StoredUser {
  id: string;
  /** Lower-case; "" when the account has none. Unique in the namespace when not "". */
  username: string;
  /** Lower-case; unique in the namespace. */
  email: string;
  /** An argon2id PHC string. */
  passwordHash: string;
  verified: boolean;
  /** Milliseconds since the epoch; 0 while not verified. */
  verifiedAt: number;
  profile: Record<string, string>;
  createdAt: number;
  updatedAt: number;
}

/** Changes to an account; fields left out stay as they are. */
export interface UserChanges {
  username?: string;
  email?: string;
  profile?: Record<string, string>;
  passwordHash?: string;
  verified?: boolean;
  verifiedAt?: number;
  updatedAt: number;
}

export type CreateUserOutcome = 'created' | 'id_taken' | 'email_taken' | 'username_taken';
export type UpdateUserOutcome = 'updated' | 'not_found' | 'email_taken' | 'username_taken';

export interface StoredSession {
  /** SHA-256 of the session id, hex. */
  idHash: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
}

export type TokenPurpose = 'verification' | 'password_reset' | 'magic_link';

export interface StoredToken {
  /** SHA-256 of the token, hex. */
  hash: string;
  purpose: TokenPurpose;
  userId: string;
  createdAt: number;
  expiresAt: number;
  /** Small facts the token carries, e.g. where to redirect after verification. */
  data: Record<string, string>;
}

/** A project's own version of one of the user block's mails. */
export interface StoredTemplate {
  name: string;
  subject: string;
  textBody: string;
  htmlBody: string;
  fromName: string;
  updatedAt: number;
}

export interface UserStore {
  readonly backend: 'sqlite' | 'postgres';

  /** Adds an account unless its id, email or (non-empty) username is taken; says which was. */
  createUser(namespace: string, user: StoredUser): Promise<CreateUserOutcome>;
  getUser(namespace: string, id: string): Promise<StoredUser | undefined>;
  findUser(namespace: string, field: 'email' | 'username', value: string): Promise<StoredUser | undefined>;
  updateUser(namespace: string, id: string, changes: UserChanges): Promise<UpdateUserOutcome>;
  /** Deletes the account with its sessions and tokens; false when there was none. */
  deleteUser(namespace: string, id: string): Promise<boolean>;
  /** Accounts in the order they were created (then by id). */
  listUsers(namespace: string, offset: number, limit: number): Promise<StoredUser[]>;

  createSession(namespace: string, session: StoredSession): Promise<void>;
  /** The session, unless it does not exist or expired at or before `now`. */
  getSession(namespace: string, idHash: string, now: number): Promise<StoredSession | undefined>;
  deleteSession(namespace: string, idHash: string): Promise<boolean>;
  /** Ends every session of a user, but the one whose hash is `keepIdHash`; returns how many. */
  deleteSessions(namespace: string, userId: string, keepIdHash?: string): Promise<number>;

  createToken(namespace: string, token: StoredToken): Promise<void>;
  /**
   * Removes the token of that purpose and hash and returns it, expired or not: single use is
   * atomic, so of two concurrent uses exactly one gets the token. The caller checks expiry.
   */
  consumeToken(namespace: string, purpose: TokenPurpose, hash: string): Promise<StoredToken | undefined>;
  /** Removes a user's tokens of the given purposes; returns how many. */
  deleteTokens(namespace: string, userId: string, purposes: TokenPurpose[]): Promise<number>;

  /** Counts one attempt (a failed login, a mail asked for) under a subject such as `login:ada`. */
  recordAttempt(namespace: string, subject: string, at: number): Promise<void>;
  /** Attempts under the subject at or after `since`. */
  countAttempts(namespace: string, subject: string, since: number): Promise<number>;
  clearAttempts(namespace: string, subject: string): Promise<void>;

  /** Creates or replaces a template. */
  putTemplate(namespace: string, template: StoredTemplate): Promise<void>;
  getTemplate(namespace: string, name: string): Promise<StoredTemplate | undefined>;
  deleteTemplate(namespace: string, name: string): Promise<boolean>;

  /** Deletes everything of every environment of a project (namespaces `${projectId}/...`); returns the accounts deleted. */
  deleteProject(projectId: string): Promise<number>;
  /** Removes sessions and tokens expired at or before `now`, and attempts before `attemptsBefore`; returns how many rows. */
  purgeExpired(now: number, attemptsBefore: number): Promise<number>;
  /** Leaves the shared connection open. */
  close(): Promise<void>;
}
