/**
 * @module kit/otel/otlp
 * Finished spans as an OTLP `ExportTraceServiceRequest`, in the two encodings OTLP/HTTP takes:
 * JSON (`http/json`) and protobuf (`http/protobuf`). The message is small and stable
 * (opentelemetry-proto's trace/v1, common/v1, resource/v1), so it is written here in a few lines
 * rather than with a generated-code package and its runtime.
 */
import type { AttributeValue, SpanKind } from '../tracing.js';

export interface FinishedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  name: string;
  kind: SpanKind;
  /** Epoch milliseconds, fractional. */
  startMs: number;
  endMs: number;
  /** Name, value, name, value... */
  attributes: (string | AttributeValue)[];
  /** Set when the span failed. */
  error: string | undefined;
  /** The W3C trace flags' sampled bit, for the span's `flags`. */
  remoteParent: boolean;
}

export interface Resource {
  attributes: [string, AttributeValue][];
  scopeName: string;
  scopeVersion: string;
}

const KIND_NUMBER: Record<SpanKind, number> = { internal: 1, server: 2, client: 3 };

function nanosOf(epochMs: number): bigint {
  return BigInt(Math.round(epochMs * 1000)) * 1000n;
}

// ---- JSON (the protobuf JSON mapping, with ids in hex as OTLP/HTTP says) ----

function jsonValue(value: AttributeValue): Record<string, unknown> {
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  return Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value };
}

export function encodeJson(resource: Resource, spans: FinishedSpan[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: { attributes: resource.attributes.map(([key, value]) => ({ key, value: jsonValue(value) })) },
        scopeSpans: [
          {
            scope: { name: resource.scopeName, version: resource.scopeVersion },
            spans: spans.map((span) => {
              const attributes: { key: string; value: Record<string, unknown> }[] = [];
              for (let i = 0; i < span.attributes.length; i += 2) attributes.push({ key: span.attributes[i] as string, value: jsonValue(span.attributes[i + 1]) });
              return {
                traceId: span.traceId,
                spanId: span.spanId,
                ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
                name: span.name,
                kind: KIND_NUMBER[span.kind],
                startTimeUnixNano: nanosOf(span.startMs).toString(),
                endTimeUnixNano: nanosOf(span.endMs).toString(),
                attributes,
                flags: spanFlags(span),
                status: span.error === undefined ? {} : { code: 2, message: span.error },
              };
            }),
          },
        ],
      },
    ],
  });
}

/** Sampled (exported spans are), and whether the parent was remote (bits 8 and 9, as the proto says). */
function spanFlags(span: FinishedSpan): number {
  return 0x01 | 0x100 | (span.remoteParent ? 0x200 : 0);
}

// ---- protobuf ----

const ASCII = /^[\x00-\x7f]*$/;

/**
 * Writes protobuf fields into one growing buffer. A nested message's length is written before it
 * in one byte, and its bytes moved along when the length takes more.
 */
class ProtoWriter {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private at = 0;

  private reserve(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return;
    const larger = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.at + bytes));
    this.buffer.copy(larger, 0, 0, this.at);
    this.buffer = larger;
  }

  private varint(value: number): void {
    this.reserve(10);
    while (value > 0x7f) {
      this.buffer[this.at++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.at++] = value;
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** A non-negative integer (up to 2^53), or a negative one as its 64-bit two's complement. */
  uint(field: number, value: number): void {
    this.tag(field, 0);
    if (value >= 0) return this.varint(value);
    let rest = BigInt.asUintN(64, BigInt(value));
    this.reserve(10);
    while (rest > 0x7fn) {
      this.buffer[this.at++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    this.buffer[this.at++] = Number(rest);
  }

  fixed64(field: number, value: bigint): void {
    this.tag(field, 1);
    this.reserve(8);
    this.at = this.buffer.writeBigUInt64LE(value, this.at);
  }

  fixed32(field: number, value: number): void {
    this.tag(field, 5);
    this.reserve(4);
    this.at = this.buffer.writeUInt32LE(value, this.at);
  }

  double(field: number, value: number): void {
    this.tag(field, 1);
    this.reserve(8);
    this.at = this.buffer.writeDoubleLE(value, this.at);
  }

  /** An id given in hex, as bytes. */
  hexBytes(field: number, value: string): void {
    this.tag(field, 2);
    this.varint(value.length >> 1);
    this.reserve(value.length >> 1);
    this.at += this.buffer.write(value, this.at, 'hex');
  }

  string(field: number, value: string): void {
    this.tag(field, 2);
    // Short ASCII (names, most values) byte by byte: cheaper than a trip into the encoder.
    if (value.length < 0x80 && ASCII.test(value)) {
      this.reserve(value.length + 1);
      const buffer = this.buffer;
      let at = this.at;
      buffer[at++] = value.length;
      for (let i = 0; i < value.length; i++) buffer[at++] = value.charCodeAt(i);
      this.at = at;
      return;
    }
    const length = Buffer.byteLength(value);
    this.varint(length);
    this.reserve(length);
    this.at += this.buffer.write(value, this.at, 'utf8');
  }

  message(field: number, write: (inner: ProtoWriter) => void): void {
    this.tag(field, 2);
    this.reserve(1);
    const lengthAt = this.at++;
    write(this);
    const length = this.at - lengthAt - 1;
    if (length < 0x80) {
      this.buffer[lengthAt] = length;
      return;
    }
    let size = 1;
    for (let rest = length; rest > 0x7f; rest = Math.floor(rest / 0x80)) size++;
    this.reserve(size - 1);
    this.buffer.copyWithin(lengthAt + size, lengthAt + 1, this.at);
    this.at += size - 1;
    let rest = length;
    let position = lengthAt;
    while (rest > 0x7f) {
      this.buffer[position++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.buffer[position] = rest;
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.at);
  }
}

function writeKeyValue(writer: ProtoWriter, field: number, key: string, value: AttributeValue): void {
  writer.message(field, (pair) => {
    pair.string(1, key);
    pair.message(2, (any) => {
      if (typeof value === 'string') any.string(1, value);
      else if (typeof value === 'boolean') any.uint(2, value ? 1 : 0);
      else if (Number.isInteger(value)) any.uint(3, value);
      else any.double(4, value);
    });
  });
}

export function encodeProtobuf(resource: Resource, spans: FinishedSpan[]): Buffer {
  const request = new ProtoWriter();
  request.message(1, (resourceSpans) => {
    resourceSpans.message(1, (res) => {
      for (const [key, value] of resource.attributes) writeKeyValue(res, 1, key, value);
    });
    resourceSpans.message(2, (scopeSpans) => {
      scopeSpans.message(1, (scope) => {
        scope.string(1, resource.scopeName);
        scope.string(2, resource.scopeVersion);
      });
      for (const span of spans) {
        scopeSpans.message(2, (out) => {
          out.hexBytes(1, span.traceId);
          out.hexBytes(2, span.spanId);
          if (span.parentSpanId) out.hexBytes(4, span.parentSpanId);
          out.string(5, span.name);
          out.uint(6, KIND_NUMBER[span.kind]);
          out.fixed64(7, nanosOf(span.startMs));
          out.fixed64(8, nanosOf(span.endMs));
          for (let i = 0; i < span.attributes.length; i += 2) writeKeyValue(out, 9, span.attributes[i] as string, span.attributes[i + 1]);
          if (span.error !== undefined) {
            const message = span.error;
            out.message(15, (status) => {
              status.string(2, message);
              status.uint(3, 2);
            });
          }
          out.fixed32(16, spanFlags(span));
        });
      }
    });
  });
  return request.finish();
}
