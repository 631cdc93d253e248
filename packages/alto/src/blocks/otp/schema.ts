/**
 * @module blocks/otp/schema
 * The wire schema of the `otp` block, compatible with M3O's `otp` service, plus the secret
 * and `otpauth://` URI for authenticator apps and a choice of HMAC hash.
 */
import { z } from 'zod';
import { DEFAULT_DIGITS, DEFAULT_PERIOD_SECONDS, MAX_DIGITS, MAX_PERIOD_SECONDS, MIN_DIGITS } from './passwords.js';
import { OTP_ALGORITHMS } from './totp.js';

const Id = z
  .string({ error: 'required: the user, email or other id the code is for' })
  .min(1, 'required: the user, email or other id the code is for')
  .max(512, 'at most 512 characters')
  .describe('unique id, email or user to generate an OTP for');

export const GenerateRequest = z.object({
  id: Id,
  size: z
    .number()
    .int()
    .optional()
    .describe(`number of digits, ${MIN_DIGITS} to ${MAX_DIGITS} (default: ${DEFAULT_DIGITS})`),
  expiry: z
    .number()
    .int()
    .optional()
    .describe(`how long a code lasts (the TOTP period), in seconds, 1 to ${MAX_PERIOD_SECONDS} (default: ${DEFAULT_PERIOD_SECONDS})`),
  algorithm: z
    .enum(OTP_ALGORITHMS)
    .optional()
    .describe('HMAC hash of the TOTP; set on the first Generate for an id (default: SHA1, what authenticator apps expect)'),
});
export const GenerateResponse = z.object({
  code: z.string().describe('one time pass code'),
  secret: z.string().describe("the id's TOTP secret in base 32, for authenticator apps"),
  uri: z.string().describe('otpauth://totp/... key URI; show it as a QR code to enrol an authenticator app'),
});

export const ValidateRequest = z.object({
  id: Id.describe('unique id, email or user for which the code was generated'),
  code: z
    .string({ error: 'required: the one time pass code to check' })
    .min(1, 'required: the one time pass code to check')
    .max(64, 'at most 64 characters')
    .describe('one time pass code to validate'),
});
export const ValidateResponse = z.object({
  success: z.boolean().describe('true if the code is valid for the id'),
});
