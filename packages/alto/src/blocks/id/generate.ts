/**
 * @module blocks/id/generate
 * Unique id generators. Time-ordered ids (snowflake, bigflake, ulid, uuidv7, ksuid) sort by
 * creation time; random ones (uuid, nanoid, shortid) carry at least 60 bits of randomness.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { base62, randomString, URL_ALPHABET } from '../../kit/random.js';

export const ID_TYPES = ['uuid', 'uuidv7', 'ulid', 'ksuid', 'nanoid', 'shortid', 'snowflake', 'bigflake'] as const;
export type IdType = (typeof ID_TYPES)[number];

/** Snowflake epoch: 2020-01-01T00:00:00Z, which leaves 41 bits of milliseconds until 2089. */
const SNOWFLAKE_EPOCH = 1577836800000n;
/** KSUID epoch, as the KSUID specification defines it. */
const KSUID_EPOCH = 1400000000;
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * Generators for one process. Snowflake and bigflake ids embed a worker number so two
 * processes never produce the same id in the same millisecond; sequences make ids from one
 * process strictly increasing even within a millisecond or when the clock steps back.
 */
export class IdGenerator {
  private snowflakeLast = 0n;
  private snowflakeSequence = 0n;
  private bigflakeLast = 0n;
  private bigflakeSequence = 0n;
  private ulidLastTime = -1;
  private ulidLastRandom = 0n;

  constructor(
    /** 10 bits: 0..1023. */
    private readonly snowflakeWorker: bigint = BigInt(randomBytes(2).readUInt16BE() & 0x3ff),
    /** 48 bits. */
    private readonly bigflakeWorker: bigint = BigInt('0x' + randomBytes(6).toString('hex')),
    private readonly now: () => number = Date.now,
  ) {}

  generate(type: IdType): string {
    switch (type) {
      case 'uuid':
        return randomUUID();
      case 'uuidv7':
        return this.uuidv7();
      case 'ulid':
        return this.ulid();
      case 'ksuid':
        return this.ksuid();
      case 'nanoid':
        return randomString(21, URL_ALPHABET);
      case 'shortid':
        return randomString(11, URL_ALPHABET);
      case 'snowflake':
        return this.snowflake();
      case 'bigflake':
        return this.bigflake();
    }
  }

  /** 41 bits of milliseconds since 2020, 10 bits of worker, 12 bits of sequence, as decimal. */
  snowflake(): string {
    let time = BigInt(this.now()) - SNOWFLAKE_EPOCH;
    if (time < this.snowflakeLast) time = this.snowflakeLast; // the clock stepped back
    if (time === this.snowflakeLast) {
      this.snowflakeSequence = (this.snowflakeSequence + 1n) & 0xfffn;
      // 4096 ids in one millisecond: borrow the next millisecond rather than repeat an id.
      if (this.snowflakeSequence === 0n) time += 1n;
    } else {
      this.snowflakeSequence = 0n;
    }
    this.snowflakeLast = time;
    return ((time << 22n) | (this.snowflakeWorker << 12n) | this.snowflakeSequence).toString();
  }

  /** 64 bits of milliseconds since 1970, 48 bits of worker, 16 bits of sequence, as decimal. */
  bigflake(): string {
    let time = BigInt(this.now());
    if (time < this.bigflakeLast) time = this.bigflakeLast;
    if (time === this.bigflakeLast) {
      this.bigflakeSequence = (this.bigflakeSequence + 1n) & 0xffffn;
      if (this.bigflakeSequence === 0n) time += 1n;
    } else {
      this.bigflakeSequence = 0n;
    }
    this.bigflakeLast = time;
    return ((time << 64n) | (this.bigflakeWorker << 16n) | this.bigflakeSequence).toString();
  }

  /** ULID: 48-bit time and 80 random bits in Crockford base-32; monotonic within a millisecond. */
  ulid(): string {
    let time = this.now();
    let random: bigint;
    if (time <= this.ulidLastTime) {
      time = this.ulidLastTime;
      random = this.ulidLastRandom + 1n;
      if (random >> 80n) {
        time += 1;
        random = BigInt('0x' + randomBytes(10).toString('hex'));
      }
    } else {
      random = BigInt('0x' + randomBytes(10).toString('hex'));
    }
    this.ulidLastTime = time;
    this.ulidLastRandom = random;
    return crockford(BigInt(time), 10) + crockford(random, 16);
  }

  /** UUID version 7 (RFC 9562): 48-bit milliseconds, then random bits. */
  uuidv7(): string {
    const bytes = randomBytes(16);
    const time = this.now();
    bytes.writeUIntBE(time, 0, 6);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = bytes.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** KSUID: 32-bit seconds since 2014-05-13 and 128 random bits, 27 base-62 characters. */
  ksuid(): string {
    const bytes = Buffer.alloc(20);
    bytes.writeUInt32BE(Math.floor(this.now() / 1000) - KSUID_EPOCH, 0);
    randomBytes(16).copy(bytes, 4);
    return base62(bytes, 27);
  }
}

function crockford(value: bigint, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = CROCKFORD[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}
