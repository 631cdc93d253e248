/**
 * A websocket client for Alto's stream endpoints, as a user's program would open one: sends the
 * request, keeps every message that arrives (or hands it to a callback, one at a time, in
 * order), and reports how the server closed the stream.
 */
import WebSocket from 'ws';

export interface StreamClient<T = any> {
  ws: WebSocket;
  messages: T[];
  /** Resolves with the close code and reason, however the stream ends. */
  closed: Promise<{ code: number; reason: string }>;
  isClosed(): boolean;
  close(): void;
}

export async function openStream<T = any>(
  baseUrl: string,
  key: string,
  service: string,
  endpoint: string,
  request: object,
  onMessage?: (message: T) => void | Promise<void>,
): Promise<StreamClient<T>> {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/${service}/${endpoint}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const messages: T[] = [];
  let done = false;
  // Messages are handled one after another even when the callback is slow (an Ack call).
  let chain = Promise.resolve();
  ws.on('message', (data) => {
    const message = JSON.parse(data.toString()) as T;
    messages.push(message);
    if (onMessage) chain = chain.then(() => onMessage(message)).catch(() => {});
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => {
      done = true;
      resolve({ code, reason: reason.toString() });
    });
    ws.once('error', () => {}); // a refused connection also ends in 'close'
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_request, response) => reject(new Error(`websocket refused: ${response.statusCode}`)));
    ws.once('error', reject);
  });
  ws.send(JSON.stringify(request));
  return { ws, messages, closed, isClosed: () => done, close: () => ws.close() };
}
