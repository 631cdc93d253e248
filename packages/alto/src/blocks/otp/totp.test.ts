import assert from 'node:assert/strict';
import { test } from 'node:test';
import { base32Decode, base32Encode, hotp, otpauthUri, totp, type OtpAlgorithm } from './totp.js';

/** RFC 6238 Appendix B: the seed for each hash is the ASCII digits repeated to the hash's length. */
const SEEDS: Record<OtpAlgorithm, Buffer> = {
  SHA1: Buffer.from('12345678901234567890', 'ascii'),
  SHA256: Buffer.from('12345678901234567890123456789012', 'ascii'),
  SHA512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234', 'ascii'),
};

const RFC6238_VECTORS: [seconds: number, sha1: string, sha256: string, sha512: string][] = [
  [59, '94287082', '46119246', '90693936'],
  [1111111109, '07081804', '68084774', '25091201'],
  [1111111111, '14050471', '67062674', '99943326'],
  [1234567890, '89005924', '91819424', '93441116'],
  [2000000000, '69279037', '90698825', '38618901'],
  [20000000000, '65353130', '77737706', '47863826'],
];

test('TOTP matches the RFC 6238 Appendix B test vectors (SHA-1, SHA-256, SHA-512, 8 digits, 30 s)', () => {
  for (const [seconds, sha1, sha256, sha512] of RFC6238_VECTORS) {
    const expected: Record<OtpAlgorithm, string> = { SHA1: sha1, SHA256: sha256, SHA512: sha512 };
    for (const algorithm of ['SHA1', 'SHA256', 'SHA512'] as const) {
      const code = totp(SEEDS[algorithm], seconds * 1000, { digits: 8, periodSeconds: 30, algorithm });
      assert.equal(code, expected[algorithm], `${algorithm} at ${seconds}`);
    }
  }
});

test('HOTP matches the RFC 4226 Appendix D test values', () => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => assert.equal(hotp(SEEDS.SHA1, counter, 6), code, `counter ${counter}`));
});

test('base 32 follows RFC 4648 and round-trips', () => {
  // RFC 4648 §10 test vectors, without padding.
  const vectors: [string, string][] = [
    ['', ''],
    ['f', 'MY'],
    ['fo', 'MZXQ'],
    ['foo', 'MZXW6'],
    ['foob', 'MZXW6YQ'],
    ['fooba', 'MZXW6YTB'],
    ['foobar', 'MZXW6YTBOI'],
  ];
  for (const [plain, encoded] of vectors) {
    assert.equal(base32Encode(Buffer.from(plain)), encoded);
    assert.equal(base32Decode(encoded).toString(), plain);
  }
  assert.equal(base32Decode('mzxw 6ytb oi======').toString(), 'foobar');
  assert.equal(base32Encode(SEEDS.SHA1), 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ');
  assert.throws(() => base32Decode('MZ1'), /not a base-32 character/);
});

test('otpauth URIs carry the secret, issuer and settings', () => {
  const uri = otpauthUri({
    issuer: 'My Shop',
    account: 'ada@example.com',
    secret: SEEDS.SHA1,
    digits: 6,
    periodSeconds: 60,
    algorithm: 'SHA1',
  });
  assert.equal(
    uri,
    'otpauth://totp/My%20Shop:ada%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=My%20Shop&algorithm=SHA1&digits=6&period=60',
  );
  const parsed = new URL(uri);
  assert.equal(parsed.protocol, 'otpauth:');
  assert.equal(parsed.searchParams.get('issuer'), 'My Shop');
});
