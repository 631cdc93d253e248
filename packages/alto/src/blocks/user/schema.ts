/**
 * @module blocks/user/schema
 * The wire schema of the `user` block, compatible with M3O's `user` service (same endpoints,
 * field names and defaults), plus Alto's additions: `expiration` on every mail, `client_address`
 * on Login, `session_id` on UpdatePassword, and the mail templates (`SetTemplate`,
 * `ReadTemplate`). As protobuf's JSON mapping did for M3O, each snake_case request field is
 * also accepted in lowerCamelCase (`sessionId`), which M3O's JS client sends.
 */
import { z } from 'zod';
import { PLACEHOLDERS, TEMPLATE_NAMES } from './templates.js';

/** Renames lowerCamelCase keys to the snake_case the schema names, unless both were sent. */
function acceptingCamelCase<Shape extends z.ZodRawShape>(shape: Shape) {
  const aliases = new Map<string, string>();
  for (const name of Object.keys(shape)) {
    const camel = name.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
    if (camel !== name) aliases.set(camel, name);
    const snake = name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
    if (snake !== name) aliases.set(snake, name);
  }
  return z.preprocess((input) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
    const body = { ...(input as Record<string, unknown>) };
    for (const [alias, name] of aliases) {
      if (alias in body && !(name in body)) body[name] = body[alias];
      delete body[alias];
    }
    return body;
  }, z.object(shape));
}

const Text = (description: string) => z.string({ error: `expected a string: ${description}` }).describe(description);

/** An int64 as a JSON number or a decimal string (protobuf JSON's int64). */
function int64(description: string) {
  return z
    .preprocess(
      (input) => (typeof input === 'string' && /^\s*-?\d+\s*$/.test(input) ? Number(input) : input),
      z.number({ error: 'expected an integer' }).int({ error: 'expected an integer' }),
    )
    .describe(description);
}

const Profile = z
  .record(z.string(), z.string({ error: 'profile values must be strings' }))
  .describe('any data about the user, as string keys and string values');

export const Account = z.object({
  id: z.string().describe('unique account id'),
  username: z.string().describe('the username, lower-case; empty when none was given'),
  email: z.string().describe('the email address, lower-case'),
  verified: z.boolean().describe('if the account is verified'),
  verification_date: z.number().int().describe('when the email was verified, unix seconds; 0 when not verified'),
  created: z.number().int().describe('unix timestamp'),
  updated: z.number().int().describe('unix timestamp'),
  profile: Profile,
});

export const Session = z.object({
  id: z.string().describe('the session id: a secret, give it only to the user it belongs to'),
  created: z.number().int().describe('unix timestamp'),
  expires: z.number().int().describe('unix timestamp'),
  userId: z.string().describe('the associated user id'),
});

const Empty = z.object({});

export const CreateRequest = acceptingCamelCase({
  email: Text('the email address').default(''),
  id: Text('optional account id; default: a new UUID').default(''),
  password: Text('the user password, at least 8 characters').default(''),
  profile: Profile.default({}).describe('optional user profile as map<string,string>'),
  username: Text('the username (optional; unique when given)').default(''),
});
export const CreateResponse = z.object({ account: Account });

export const ReadRequest = acceptingCamelCase({
  email: Text('the account email').default(''),
  id: Text('the account id').default(''),
  username: Text('the account username').default(''),
});
export const ReadResponse = z.object({ account: Account });

export const UpdateRequest = acceptingCamelCase({
  id: Text('the account id').default(''),
  email: Text('the new email address; empty keeps it. A new address is not verified until verified again').default(''),
  username: Text('the new username; empty keeps it').default(''),
  profile: Profile.optional().describe('the user profile as map<string,string>; replaces the whole profile when given'),
});
export const UpdateResponse = Empty;

export const DeleteRequest = acceptingCamelCase({ id: Text('the account id').default('') });
export const DeleteResponse = Empty;

export const ListRequest = acceptingCamelCase({
  limit: int64('Maximum number of records to return. Default limit is 25. Maximum limit is 1000. Anything higher will return an error.').default(
    25,
  ),
  offset: int64('how many accounts to skip').default(0),
});
export const ListResponse = z.object({ users: z.array(Account) });

export const LoginRequest = acceptingCamelCase({
  email: Text('The email address of the user').default(''),
  username: Text('The username of the user (when no email is given)').default(''),
  password: Text('The password of the user').default(''),
  client_address: Text(
    "the end user's IP address as your backend saw it (Alto addition): failed logins are limited per account and per " +
      'address; default: the address that called Alto',
  ).default(''),
});
export const LoginResponse = z.object({ session: Session.describe('The session of the logged in user') });

export const LogoutRequest = acceptingCamelCase({ session_id: Text('the session id for the user to logout').default('') });
export const LogoutResponse = Empty;

export const LogoutAllRequest = acceptingCamelCase({ user_id: Text('the user to logout').default('') });
export const LogoutAllResponse = Empty;

export const ReadSessionRequest = acceptingCamelCase({ session_id: Text('The unique session id').default('') });
export const ReadSessionResponse = z.object({ session: Session.describe('the session for the user') });

export const UpdatePasswordRequest = acceptingCamelCase({
  userId: Text('the account id').default(''),
  old_password: Text('the old password').default(''),
  new_password: Text('the new password').default(''),
  confirm_password: Text('confirm new password').default(''),
  session_id: Text("the session to keep (Alto addition); every other session of the user ends; default: they all end").default(''),
});
export const UpdatePasswordResponse = Empty;

const Expiration = (what: string, seconds: number) =>
  int64(`Number of secs that the ${what} is valid for, defaults to ${seconds} secs (${Math.round(seconds / 60)} mins)`).default(seconds);

export const SendVerificationEmailRequest = acceptingCamelCase({
  email: Text('email address to send the verification code').default(''),
  redirect_url: Text('The url to redirect to after successful verification').default(''),
  failure_redirect_url: Text('The url to redirect to incase of failure').default(''),
  from_name: Text('Display name of the sender for the email').default(''),
  subject: Text("subject of the email; default: the project's verification template").default(''),
  text_content: Text(
    "Text content of the email. Include '$micro_verification_link' (or {{link}}) which will be replaced by a verification link; " +
      "default: the project's verification template",
  ).default(''),
  expiration: Expiration('verification link (Alto addition)', 86_400),
});
export const SendVerificationEmailResponse = Empty;

export const VerifyEmailRequest = acceptingCamelCase({ token: Text('The token from the verification email').default('') });
export const VerifyEmailResponse = Empty;

export const SendPasswordResetEmailRequest = acceptingCamelCase({
  email: Text('email address to send reset for').default(''),
  expiration: Expiration('password reset email', 1800),
  from_name: Text('Display name of the sender for the email').default(''),
  subject: Text('subject of the email').default(''),
  text_content: Text(
    "Text content of the email. Don't forget to include the string '$code' (or {{code}}) which will be replaced by the reset code",
  ).default(''),
});
export const SendPasswordResetEmailResponse = Empty;

export const ResetPasswordRequest = acceptingCamelCase({
  email: Text('the email to reset the password for').default(''),
  code: Text('The code from the verification email').default(''),
  new_password: Text('the new password').default(''),
  confirm_password: Text('confirm new password').default(''),
});
export const ResetPasswordResponse = Empty;

export const SendMagicLinkRequest = acceptingCamelCase({
  email: Text('the email address of the user').default(''),
  address: Text('Your web site address, example www.example.com or user.example.com').default(''),
  endpoint: Text(
    'Endpoint name where your http request handler handles MagicLink by calling the VerifyToken endpoint; the link is ' +
      'https://{address}/{endpoint}/{token}',
  ).default(''),
  from_name: Text('Display name of the sender for the email').default(''),
  subject: Text('subject of the email').default(''),
  text_content: Text("Text content of the email. Include '$micro_verification_link' (or {{link}}) which will be replaced by the link").default(''),
  expiration: Expiration('magic link (Alto addition)', 600),
});
export const SendMagicLinkResponse = Empty;

export const VerifyTokenRequest = acceptingCamelCase({ token: Text('the token from the magic link').default('') });
export const VerifyTokenResponse = z.object({
  is_valid: z.boolean(),
  message: z.string().describe('why the token is not valid: "token empty", "token not found" or "token expired"'),
  session: Session.optional().describe('a new session for the user, when the token is valid'),
});

const TemplateName = z.enum(TEMPLATE_NAMES, { error: `expected one of ${TEMPLATE_NAMES.join(', ')}` });
const placeholders = PLACEHOLDERS.map((name) => `{{${name}}}`).join(', ');

export const SetTemplateRequest = acceptingCamelCase({
  name: TemplateName.describe('which mail: verification, password_reset or magic_link'),
  subject: Text(`the subject; may use ${placeholders}`).default(''),
  text_body: Text(`the text body; may use ${placeholders}`).default(''),
  html_body: Text('the HTML body (optional); placeholders are HTML-escaped').default(''),
  from_name: Text('the display name of the sender').default(''),
});
export const TemplateResponse = z.object({
  name: z.string(),
  subject: z.string(),
  text_body: z.string(),
  html_body: z.string(),
  from_name: z.string(),
  custom: z.boolean().describe("true when it is the project's own, false for the built-in one"),
});
export const ReadTemplateRequest = acceptingCamelCase({ name: TemplateName.describe('which mail: verification, password_reset or magic_link') });
