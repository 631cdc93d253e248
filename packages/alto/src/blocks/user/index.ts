/**
 * @module blocks/user
 * The `user` block: sign-up, login and sessions for a project's own users, M3O-compatible
 * (every endpoint of M3O's `user` service), with email verification, password reset and magic
 * links sent through the platform's Mailer (so they land in the project's outbox and, when SMTP
 * is configured, in the user's mailbox), using templates the project can change. Embedded
 * SQLite by default; PostgreSQL when Alto runs with `--store postgres://...`.
 */
import { parseBaseUrl } from '../../kit/public-url.js';
import { mailComponent } from '../../platform/mail.js';
import { component, defineService, endpoint, type CallContext } from '../../platform/service.js';
import {
  CreateRequest,
  CreateResponse,
  DeleteRequest,
  DeleteResponse,
  ListRequest,
  ListResponse,
  LoginRequest,
  LoginResponse,
  LogoutAllRequest,
  LogoutAllResponse,
  LogoutRequest,
  LogoutResponse,
  ReadRequest,
  ReadResponse,
  ReadSessionRequest,
  ReadSessionResponse,
  ReadTemplateRequest,
  ResetPasswordRequest,
  ResetPasswordResponse,
  SendMagicLinkRequest,
  SendMagicLinkResponse,
  SendPasswordResetEmailRequest,
  SendPasswordResetEmailResponse,
  SendVerificationEmailRequest,
  SendVerificationEmailResponse,
  SetTemplateRequest,
  TemplateResponse,
  UpdatePasswordRequest,
  UpdatePasswordResponse,
  UpdateRequest,
  UpdateResponse,
  VerifyEmailRequest,
  VerifyEmailResponse,
  VerifyTokenRequest,
  VerifyTokenResponse,
} from './schema.js';
import type { TemplateName } from './templates.js';
import { DEFAULT_USER_LIMITS, invalidToken, UserBlock } from './users.js';
import { verificationPage } from './verify-page.js';
import { userSection } from './transfer.js';

const userBlock = component('user.store', (platform) => {
  const block = new UserBlock(
    platform.stores.users,
    platform.use(mailComponent),
    platform.log.child({ block: 'user' }),
    DEFAULT_USER_LIMITS,
    Date.now,
    parseBaseUrl(process.env.ALTO_PUBLIC_URL, 'ALTO_PUBLIC_URL'),
  );
  block.startPurging();
  return block;
});

function use(context: CallContext): { users: UserBlock; namespace: string } {
  return { users: context.platform.use(userBlock), namespace: context.tenant.namespace };
}

async function templateResponse(users: UserBlock, namespace: string, name: TemplateName) {
  const template = await users.template(namespace, name);
  return {
    name,
    subject: template.subject,
    text_body: template.textBody,
    html_body: template.htmlBody,
    from_name: template.fromName,
    custom: template.custom,
  };
}

export const userService = defineService({
  name: 'user',
  description: "Sign-up, login and sessions for your app's users, with email verification, password reset and magic links.",
  // Calls that hash a password (argon2id) cost 10, calls that send a mail 100, the rest 1.
  priceMicros: 1,
  // The Mailer first: the user block's component is created with it.
  components: [mailComponent, userBlock],
  httpRoutes: [verificationPage((platform) => platform.use(userBlock))],
  endpoints: {
    Create: endpoint({
      description:
        'Create a new user account. The email address and username for the account must be unique. The password is ' +
        'stored as an argon2id hash.',
      priceMicros: 10,
      request: CreateRequest,
      response: CreateResponse,
      example: { id: 'usrid-1', username: 'usrname-1', email: 'joe@example.com', password: 'mySecretPass123' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return { account: await users.create(namespace, request) };
      },
    }),
    Read: endpoint({
      description: 'Read an account by id, username or email. Only one need to be specified.',
      request: ReadRequest,
      response: ReadResponse,
      example: { id: 'usrid-1' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return { account: await users.read(namespace, request) };
      },
    }),
    Update: endpoint({
      description: 'Update the account username, email or profile. A changed email is no longer verified.',
      request: UpdateRequest,
      response: UpdateResponse,
      example: { id: 'usrid-1', email: 'joe+2@example.com' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.update(namespace, request);
        return {};
      },
    }),
    Delete: endpoint({
      description: 'Delete an account by id, with its sessions. If it does not exist, it succeeds all the same.',
      request: DeleteRequest,
      response: DeleteResponse,
      example: { id: 'usrid-1' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.delete(namespace, request.id);
        return {};
      },
    }),
    List: endpoint({
      description: 'List all users, in the order they signed up. Returns a paged list of results.',
      request: ListRequest,
      response: ListResponse,
      example: { limit: 25 },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return { users: await users.list(namespace, request.offset, request.limit) };
      },
    }),
    Login: endpoint({
      description:
        'Login using username or email. The response will return a new session for successful login, 401 in the case ' +
        'of login failure (the same for an unknown email and a wrong password), and 429 after repeated failures for ' +
        'one account or from one address.',
      priceMicros: 10,
      request: LoginRequest,
      response: LoginResponse,
      example: { email: 'joe@example.com', password: 'mySecretPass123' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        const address = request.client_address || context.clientAddress || 'unknown';
        return { session: await users.login(namespace, request, address) };
      },
    }),
    Logout: endpoint({
      description: 'Logout a user account: the session stops working.',
      request: LogoutRequest,
      response: LogoutResponse,
      example: { session_id: 'df91a612-5b24-4634-99ff-240220ab8f55' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.logout(namespace, request.session_id);
        return {};
      },
    }),
    LogoutAll: endpoint({
      description: "Logout of all user's sessions.",
      request: LogoutAllRequest,
      response: LogoutAllResponse,
      example: { user_id: 'usrid-1' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.logoutAll(namespace, request.user_id);
        return {};
      },
    }),
    ReadSession: endpoint({
      description: 'Read a session by the session id. In the event it has expired or is not found an error (404) is returned.',
      request: ReadSessionRequest,
      response: ReadSessionResponse,
      example: { session_id: 'df91a612-5b24-4634-99ff-240220ab8f55' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return { session: await users.readSession(namespace, request.session_id) };
      },
    }),
    UpdatePassword: endpoint({
      description:
        "Update the account password. The user's other sessions end (all of them unless `session_id` names one to keep), " +
        'and pending password resets and magic links stop working.',
      priceMicros: 10,
      request: UpdatePasswordRequest,
      response: UpdatePasswordResponse,
      example: { userId: 'usrid-1', old_password: 'mySecretPass123', new_password: 'mySecretPass456', confirm_password: 'mySecretPass456' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.updatePassword(namespace, request);
        return {};
      },
    }),
    SendVerificationEmail: endpoint({
      description:
        'Send a verification email to a user. The link in it opens a page on this server (at ALTO_PUBLIC_URL when set, ' +
        'else the address the call came to) that verifies the address, ' +
        'then redirects to redirect_url (or failure_redirect_url). The answer is the same whether or not the email is registered.',
      priceMicros: 100,
      request: SendVerificationEmailRequest,
      response: SendVerificationEmailResponse,
      example: {
        email: 'joe@example.com',
        subject: 'Email verification',
        redirect_url: 'https://m3o.com',
        failure_redirect_url: 'https://m3o.com/verification-failed',
        from_name: 'Awesome Dot Com',
        text_content: 'Hi there,\n\nPlease verify your email by clicking this link: $micro_verification_link',
      },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.sendVerificationEmail(
          namespace,
          {
            email: request.email,
            fromName: request.from_name,
            subject: request.subject,
            textContent: request.text_content,
            expirationSeconds: request.expiration,
            redirectUrl: request.redirect_url,
            failureRedirectUrl: request.failure_redirect_url,
          },
          context.origin,
        );
        return {};
      },
    }),
    VerifyEmail: endpoint({
      description: 'Verify the email address of an account from a token sent in an email to the user. A token works once.',
      request: VerifyEmailRequest,
      response: VerifyEmailResponse,
      example: { token: 't2323t232t' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        if (!request.token) throw invalidToken('token', 'give the token from the verification email');
        const outcome = await users.verifyEmail(namespace, request.token);
        if (!outcome.verified) throw invalidToken('token', 'send a new verification email');
        return {};
      },
    }),
    SendPasswordResetEmail: endpoint({
      description:
        'Send an email with a code to reset the password; call ResetPassword once the user provides the code. The ' +
        'answer is the same whether or not the email is registered.',
      priceMicros: 100,
      request: SendPasswordResetEmailRequest,
      response: SendPasswordResetEmailResponse,
      example: {
        email: 'joe@example.com',
        subject: 'Password reset',
        from_name: 'Awesome Dot Com',
        text_content: 'Hi there,\n click here to reset your password: myapp.com/reset/code?=$code',
      },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.sendPasswordResetEmail(namespace, {
          email: request.email,
          fromName: request.from_name,
          subject: request.subject,
          textContent: request.text_content,
          expirationSeconds: request.expiration,
        });
        return {};
      },
    }),
    ResetPassword: endpoint({
      description:
        'Reset password with the code sent by the "SendPasswordResetEmail" endpoint. The code works once; every ' +
        'session of the user ends.',
      priceMicros: 10,
      request: ResetPasswordRequest,
      response: ResetPasswordResponse,
      example: { email: 'joe@example.com', code: '012345', new_password: 'NewPassword1', confirm_password: 'NewPassword1' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.resetPassword(namespace, request);
        return {};
      },
    }),
    SendMagicLink: endpoint({
      description:
        'Login using email only (passwordless): sends a link to https://{address}/{endpoint}/{token}; your handler ' +
        'there calls VerifyToken to get a session. The answer is the same whether or not the email is registered.',
      priceMicros: 100,
      request: SendMagicLinkRequest,
      response: SendMagicLinkResponse,
      example: {
        email: 'joe@example.com',
        subject: 'MagicLink to access your account',
        text_content: 'Hi there,\n\nClick here to access your account $micro_verification_link',
        from_name: 'Awesome Dot Com',
        address: 'www.example.com',
        endpoint: 'verifytoken',
      },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.sendMagicLink(namespace, {
          email: request.email,
          fromName: request.from_name,
          subject: request.subject,
          textContent: request.text_content,
          expirationSeconds: request.expiration,
          address: request.address,
          endpoint: request.endpoint,
        });
        return {};
      },
    }),
    VerifyToken: endpoint({
      description:
        'Check whether the token attached to a magic link is valid; a valid one (single use) returns a new session. ' +
        'Call it from the handler at the endpoint given to SendMagicLink.',
      request: VerifyTokenRequest,
      response: VerifyTokenResponse,
      example: { token: 'EdsUiidouJJJLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return users.verifyToken(namespace, request.token);
      },
    }),
    SetTemplate: endpoint({
      description:
        "Set the project's own verification, password_reset or magic_link mail (Alto addition). Placeholders: " +
        '{{name}}, {{username}}, {{email}}, {{link}}, {{token}}, {{code}}, {{minutes}}. All fields empty: back to the built-in one.',
      request: SetTemplateRequest,
      response: TemplateResponse,
      example: { name: 'verification', subject: 'Welcome to Acme, {{name}}', text_body: 'Confirm your address: {{link}}', from_name: 'Acme' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        await users.setTemplate(namespace, request.name, {
          subject: request.subject,
          textBody: request.text_body,
          htmlBody: request.html_body,
          fromName: request.from_name,
        });
        return templateResponse(users, namespace, request.name);
      },
    }),
    ReadTemplate: endpoint({
      description: 'Read the verification, password_reset or magic_link mail the project sends: its own, or the built-in one.',
      request: ReadTemplateRequest,
      response: TemplateResponse,
      example: { name: 'verification' },
      async handler(request, context) {
        const { users, namespace } = use(context);
        return templateResponse(users, namespace, request.name);
      },
    }),
  },
  transfer: userSection,
  async deleteProjectData(projectId, platform) {
    await platform.use(userBlock).deleteProject(projectId);
  },
});
