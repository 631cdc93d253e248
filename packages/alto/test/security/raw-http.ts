/**
 * Raw sockets for the security suite: what an attacker sends when no well-behaved client will
 * (half-sent bodies, malformed websocket frames), and a way to see when the server closes.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawConnection {
  socket: Socket;
  /** Everything the server sent so far. */
  received(): string;
  isClosed(): boolean;
  closed: Promise<void>;
}

/** Opens a TCP connection to the server of `url`, optionally from a given loopback address. */
export function rawConnect(url: string, localAddress?: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), localAddress });
    let text = '';
    let closed = false;
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    const closedPromise = new Promise<void>((done) =>
      socket.once('close', () => {
        closed = true;
        done();
      }),
    );
    socket.once('connect', () => resolve({ socket, received: () => text, isClosed: () => closed, closed: closedPromise }));
    socket.once('error', reject);
  });
}

/** The request line and headers of a websocket handshake on `path`. */
export function upgradeRequest(path: string, key?: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
    (key ? `Authorization: Bearer ${key}\r\n` : '') +
    '\r\n'
  );
}

/** A client frame, masked as clients must (unless `masked` is false), with any header bits. */
export function frame(firstByte: number, payload: Buffer, options: { masked?: boolean; declaredLength?: bigint } = {}): Buffer {
  const masked = options.masked ?? true;
  const length = options.declaredLength ?? BigInt(payload.length);
  const parts: Buffer[] = [Buffer.from([firstByte])];
  const maskBit = masked ? 0x80 : 0;
  if (length < 126n) parts.push(Buffer.from([maskBit | Number(length)]));
  else if (length < 65_536n) {
    const header = Buffer.alloc(3);
    header[0] = maskBit | 126;
    header.writeUInt16BE(Number(length), 1);
    parts.push(header);
  } else {
    const header = Buffer.alloc(9);
    header[0] = maskBit | 127;
    header.writeBigUInt64BE(length, 1);
    parts.push(header);
  }
  if (masked) {
    const mask = randomBytes(4);
    parts.push(mask, Buffer.from(payload.map((byte, index) => byte ^ mask[index % 4])));
  } else parts.push(payload);
  return Buffer.concat(parts);
}

/** Malformed frames, each of which a server must refuse by closing, not by crashing. */
export const MALFORMED_FRAMES: Record<string, Buffer> = {
  'reserved opcode 0x3': frame(0x83, Buffer.from('x')),
  'reserved opcode 0xB (control)': frame(0x8b, Buffer.alloc(0)),
  'RSV1 set without an extension': frame(0xc1, Buffer.from('{}')),
  'RSV2 and RSV3 set': frame(0xb1, Buffer.from('{}')),
  'unmasked client frame': frame(0x81, Buffer.from('{}'), { masked: false }),
  'length past 2^53': frame(0x82, Buffer.alloc(0), { declaredLength: 1n << 62n }),
  'length past maxPayload': frame(0x82, Buffer.alloc(0), { declaredLength: 64n << 20n }),
  'fragmented ping': frame(0x09, Buffer.from('x')),
  'control frame over 125 bytes': frame(0x89, Buffer.alloc(126)),
  'invalid UTF-8 text': frame(0x81, Buffer.from([0xff, 0xfe, 0xfd])),
  'close with invalid code': frame(0x88, Buffer.from([0x03, 0xe7])),
  'continuation with nothing to continue': frame(0x80, Buffer.from('x')),
};
