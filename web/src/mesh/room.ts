// Rooms: a hash both peers know names a channel on every node of the
// mesh. Posting costs work; subscribing is a plain Server-Sent Events
// stream. Posts are not stored, so a subscriber only sees what is posted
// while it listens.

import { NodeError } from './errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, checkSignal, checkTimeout, nodeBase } from './http.js';
import { paidPost, type PaidOptions } from './paid.js';
import { bodyBytes } from './pow.js';

/** Largest room post in bytes (PROTOCOL.md). */
export const MAX_POST_BYTES = 1024;

const ROOM_HASH = /^[A-Za-z0-9_-]{8,128}$/;

/** Checks a room hash (8 to 128 of A-Z a-z 0-9 _ -) before it goes into a URL. */
export function checkRoomHash(hash: string): string {
  if (typeof hash !== 'string' || !ROOM_HASH.test(hash)) {
    throw new TypeError(
      `a room hash is 8 to 128 characters of A-Z a-z 0-9 _ - (hash something both peers know), got ${JSON.stringify(hash)}`,
    );
  }
  return hash;
}

/**
 * Checks a post against the node's rule (1 to 1024 bytes of UTF-8, no CR,
 * no NUL) and returns its bytes; throws TypeError (RangeError for the
 * size) so a post that cannot be accepted costs no work and no request.
 */
export function checkPostBody(body: string | Uint8Array): Uint8Array {
  const b = bodyBytes(body);
  if (b.length === 0) throw new RangeError('a room post must not be empty');
  if (b.length > MAX_POST_BYTES) {
    throw new RangeError(`a room post is at most ${MAX_POST_BYTES} bytes of UTF-8; this one is ${b.length}`);
  }
  for (const x of b) {
    if (x === 0x0d) throw new TypeError('a room post must not contain CR (\\r); use LF line ends');
    if (x === 0x00) throw new TypeError('a room post must not contain NUL');
  }
  if (typeof body !== 'string' && !isUtf8(b)) throw new TypeError('a room post must be valid UTF-8');
  return b;
}

function isUtf8(b: Uint8Array): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}

/** What a node says about an accepted post. */
export interface PostResult {
  /** The post's id (32 hex digits), as subscribers see it in the event id. */
  id: string;
  /** How many subscribers on this node it reached (the mesh reaches more). */
  subscribers: number;
}

/**
 * Posts to a room: every subscriber of the hash on this node and on the
 * nodes of its mesh gets it once. Pays the node's current price in work
 * (see PaidOptions for the limits). Rejects with TypeError/RangeError for
 * a post the node would refuse anyway, and NodeError (with the node's
 * error line in detail) when the node refuses it.
 */
export async function post(nodeUrl: string, hash: string, body: string | Uint8Array, opts: PaidOptions = {}): Promise<PostResult> {
  const base = nodeBase(nodeUrl);
  checkRoomHash(hash);
  const bytes = checkPostBody(body);
  const a = await paidPost(nodeUrl, base, `room/${hash}`, bytes, [200, 202], opts, 'text/plain; charset=utf-8');
  const o = a.body as { id?: unknown; subscribers?: unknown } | null;
  if (typeof o?.id !== 'string' || typeof o.subscribers !== 'number') {
    throw new NodeError('malformed', nodeUrl, `POST /room/${hash} was accepted but the answer lacks id and subscribers`, {
      status: a.status,
    });
  }
  return { id: o.id, subscribers: o.subscribers };
}

/** A room subscription. */
export interface Subscription {
  /** Resolves once the stream is open, from when posts to the room arrive; rejects if it cannot open in time. */
  readonly ready: Promise<void>;
  /** Stops listening. Idempotent. */
  close(): void;
}

/** Options of subscribe(). */
export interface SubscribeOptions {
  /** Bound for ready (default 10000 ms); the subscription is closed if it is not open by then. */
  timeoutMs?: number;
  /** Aborting it closes the subscription. */
  signal?: AbortSignal;
}

/**
 * Listens to a room: onMessage gets each post exactly as posted (and its
 * id), from this node and from the rest of the mesh. The browser's
 * EventSource reconnects by itself after a drop; posts made meanwhile are
 * lost, which room protocols built on this must tolerate.
 */
export function subscribe(
  nodeUrl: string,
  hash: string,
  onMessage: (data: string, id: string) => void,
  opts: SubscribeOptions = {},
): Subscription {
  const base = nodeBase(nodeUrl);
  checkRoomHash(hash);
  if (typeof onMessage !== 'function') throw new TypeError('onMessage must be a function');
  const timeoutMs = checkTimeout(opts.timeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  const signal = checkSignal(opts.signal);
  const url = new URL(`room/${hash}`, base).href;
  const es = new EventSource(url);
  let closed = false;
  let settle: ((err?: unknown) => void) | null = null;
  const ready = new Promise<void>((resolve, reject) => {
    settle = (err?: unknown) => {
      settle = null;
      clearTimeout(timer);
      if (err === undefined) resolve();
      else reject(err);
    };
    const timer = setTimeout(() => {
      settle?.(new NodeError('timeout', nodeUrl, `the room stream ${url} did not open within ${timeoutMs} ms`));
      close();
    }, timeoutMs);
  });
  ready.catch(() => {}); // a caller that never awaits ready must not see an unhandled rejection
  const onAbort = () => {
    settle?.(signal?.reason);
    close();
  };
  es.onopen = () => settle?.();
  es.onerror = () => {
    // CLOSED means the browser gave up (an HTTP error or wrong content
    // type); CONNECTING means it will retry by itself.
    if (es.readyState === EventSource.CLOSED) {
      settle?.(new NodeError('refused', nodeUrl, `the room stream ${url} was refused or is not an event stream`));
      close();
    }
  };
  es.onmessage = (ev: MessageEvent) => {
    if (!closed) onMessage(String(ev.data), ev.lastEventId);
  };
  function close(): void {
    if (closed) return;
    closed = true;
    es.close();
    signal?.removeEventListener('abort', onAbort);
    settle?.(new DOMException('the room subscription was closed before it opened', 'AbortError'));
  }
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return { ready, close };
}
