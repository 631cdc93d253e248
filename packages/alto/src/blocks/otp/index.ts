/**
 * @module blocks/otp
 * The `otp` block: one-time pass codes (TOTP, RFC 6238). M3O-compatible `Generate` and
 * `Validate`; Generate also returns the secret and an otpauth:// URI for authenticator apps.
 */
import { component, defineService, endpoint } from '../../platform/service.js';
import { limitsFromEnvironment, OneTimePasswords } from './passwords.js';
import { GenerateRequest, GenerateResponse, ValidateRequest, ValidateResponse } from './schema.js';

const passwords = component('otp.passwords', async (platform) => {
  const passwords = new OneTimePasswords(platform.stores.otp, { limits: limitsFromEnvironment(), cipher: platform.masterKey().cipher });
  await passwords.sealPlainSecrets();
  return passwords;
});

export const otpService = defineService({
  name: 'otp',
  description: 'One-time pass codes (TOTP) for sign-in and verification, also usable with authenticator apps.',
  priceMicros: 10,
  components: [passwords],
  endpoints: {
    Generate: endpoint({
      description:
        'Generate the current one-time code for an id (its secret is created on the first call and kept); also returns the secret and an otpauth:// URI.',
      request: GenerateRequest,
      response: GenerateResponse,
      example: { id: 'ada@example.com', size: 6, expiry: 60 },
      async handler(request, context) {
        const tenant = context.tenant;
        return context.platform.use(passwords).generate(tenant.namespace, request.id, {
          size: request.size,
          expiry: request.expiry,
          algorithm: request.algorithm,
          issuer: tenant.projectName,
        });
      },
    }),
    Validate: endpoint({
      description:
        'Check a code for an id: valid in its period and one period either side, once. Too many wrong codes answer 429 for a while.',
      request: ValidateRequest,
      response: ValidateResponse,
      example: { id: 'ada@example.com', code: '123456' },
      async handler(request, context) {
        const success = await context.platform.use(passwords).validate(context.tenant.namespace, request.id, request.code);
        return { success };
      },
    }),
  },
  async deleteProjectData(projectId, platform) {
    await platform.use(passwords).deleteProject(projectId);
  },
});
