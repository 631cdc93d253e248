/**
 * @module edge/client-hello
 * Reads what a TLS connection asks for before the handshake starts: the server name (SNI) and the
 * application protocols it offers (ALPN), from the first TLS record, which holds the ClientHello.
 * The edge needs the offered protocols to tell an ACME server's TLS-ALPN-01 validation
 * (`acme-tls/1`, RFC 8737) from a browser before any certificate is chosen, which Node's
 * SNICallback cannot see. Bounded: one record of at most 16 KiB plus its 5-byte header; anything
 * that is not a well-formed ClientHello reads as "nothing asked for" and the TLS server decides.
 */

/** A TLS record's header, then at most 2^14 bytes of body (RFC 8446 section 5.1). */
export const MAX_CLIENT_HELLO_BYTES = 5 + 16_384;

export interface ClientHello {
  serverName?: string;
  protocols: string[];
}

/**
 * How many bytes the first record needs in all, once its header is in (`Infinity` when `bytes` is
 * not the start of a handshake record, so the caller stops waiting), or undefined while fewer than 5.
 */
export function clientHelloLength(bytes: Buffer): number | undefined {
  if (bytes.length < 5) return undefined;
  if (bytes[0] !== 0x16) return Infinity;
  return Math.min(5 + bytes.readUInt16BE(3), MAX_CLIENT_HELLO_BYTES);
}

/** The server name and protocols of the ClientHello in `record`; empty when it is not one. */
export function parseClientHello(record: Buffer): ClientHello {
  const hello: ClientHello = { protocols: [] };
  try {
    readClientHello(record, hello);
  } catch {
    // A truncated or odd hello: what was read so far stands, the TLS server judges the rest.
  }
  return hello;
}

function readClientHello(record: Buffer, hello: ClientHello): void {
  if (record[0] !== 0x16 || record[5] !== 0x01) return;
  const end = Math.min(record.length, 5 + record.readUInt16BE(3));
  // Record header (5), handshake type (1) and length (3), client version (2), random (32).
  let at = 5 + 4 + 2 + 32;
  at += 1 + need(record, at, 1, end).readUInt8(at);
  at += 2 + need(record, at, 2, end).readUInt16BE(at);
  at += 1 + need(record, at, 1, end).readUInt8(at);
  const extensionsEnd = Math.min(end, at + 2 + need(record, at, 2, end).readUInt16BE(at));
  at += 2;
  while (at + 4 <= extensionsEnd) {
    const type = record.readUInt16BE(at);
    const length = record.readUInt16BE(at + 2);
    const body = at + 4;
    at = body + length;
    if (at > extensionsEnd) return;
    if (type === 0x0000) hello.serverName = readServerName(record, body, at);
    if (type === 0x0010) hello.protocols = readProtocols(record, body, at);
  }
}

/** The host_name entry of a server_name extension (RFC 6066 section 3). */
function readServerName(record: Buffer, start: number, end: number): string | undefined {
  let at = start + 2;
  while (at + 3 <= end) {
    const kind = record[at];
    const length = record.readUInt16BE(at + 1);
    if (at + 3 + length > end) return undefined;
    if (kind === 0) return record.toString('latin1', at + 3, at + 3 + length).toLowerCase();
    at += 3 + length;
  }
  return undefined;
}

/** The protocol names of an application_layer_protocol_negotiation extension (RFC 7301). */
function readProtocols(record: Buffer, start: number, end: number): string[] {
  const protocols: string[] = [];
  let at = start + 2;
  while (at < end) {
    const length = record[at];
    if (at + 1 + length > end) break;
    protocols.push(record.toString('latin1', at + 1, at + 1 + length));
    at += 1 + length;
  }
  return protocols;
}

function need(record: Buffer, at: number, bytes: number, end: number): Buffer {
  if (at + bytes > end) throw new RangeError('the ClientHello ends early');
  return record;
}
