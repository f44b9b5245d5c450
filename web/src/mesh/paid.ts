// Requests that cost proof of work (room posts, TURN credentials, DHT
// puts): get a challenge, solve it for this exact request, send it, and
// when the node refuses the proof, solve once more with the fresh
// challenge its refusal carries.

import { NodeError } from './errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, checkSignal, checkTimeout, nodeBase, refused, requestJson, type JsonAnswer } from './http.js';
import { nodeInfo, type NodeInfo } from './info.js';
import { MAX_POW_BITS, POW_HEADER, decodePowToken, powBinding, powHeader, solveBinding } from './pow.js';

/** Difficulty above which a client gives up unless told otherwise (about 16 M hashes). */
export const DEFAULT_MAX_POW_BITS = 24;
/** Tokens are not reused this close to their expiry, so a slow solve still lands in time. */
const TOKEN_MARGIN_MS = 20_000;

/** Options every paid request takes. */
export interface PaidOptions {
  signal?: AbortSignal;
  /** Bound of each HTTP request, not of the solving (default 10000 ms). */
  timeoutMs?: number;
  /**
   * Refuse to solve above this many bits (default 24) and reject with
   * NodeError 'too-expensive', so a busy node sends the client elsewhere
   * instead of hashing for minutes.
   */
  maxBits?: number;
  /**
   * A challenge to use, from a nodeInfo() or pickNodes() answer the
   * caller already holds; saves the `GET /` round trip.
   */
  info?: NodeInfo;
}

interface Challenge {
  token: string;
  difficulty: number;
  ttlMs: number;
  /** Date.now() when the node handed it out (about). */
  at: number;
  /** Date.now() after which the token is not used any more. */
  expiresAt: number;
}

// The last challenge of each node (by base URL). A token pays for any
// number of distinct requests until it expires, so reusing it saves a
// round trip per post.
const challenges = new Map<string, Challenge>();

function remember(base: string, token: string, difficulty: number, ttlMs: number, at: number): Challenge {
  const c = { token, difficulty, ttlMs, at, expiresAt: at + ttlMs - TOKEN_MARGIN_MS };
  challenges.set(base, c);
  return c;
}

/** Forgets cached challenges (all, or one node's), e.g. after a node restarted. */
export function forgetChallenges(nodeUrl?: string): void {
  if (nodeUrl === undefined) challenges.clear();
  else challenges.delete(nodeBase(nodeUrl));
}

async function challenge(node: string, base: string, opts: PaidOptions, timeoutMs: number): Promise<Challenge> {
  const given = opts.info;
  if (given !== undefined && given.fetchedFrom === base && !((challenges.get(base)?.at ?? -1) >= given.fetchedAt)) {
    remember(base, given.token, given.difficulty, given.token_ttl * 1000, given.fetchedAt);
  }
  const cached = challenges.get(base);
  if (cached !== undefined && Date.now() < cached.expiresAt) return cached;
  const info = await nodeInfo(node, { timeoutMs, ...(opts.signal ? { signal: opts.signal } : {}) });
  return remember(base, info.token, info.difficulty, info.token_ttl * 1000, info.fetchedAt);
}

/** The fresh challenge a proof refusal carries, or null. */
function challengeIn(body: unknown): { token: string; difficulty: number } | null {
  if (typeof body !== 'object' || body === null) return null;
  const { token, difficulty } = body as { token?: unknown; difficulty?: unknown };
  if (typeof token !== 'string' || typeof difficulty !== 'number' || !Number.isInteger(difficulty)) return null;
  if (difficulty < 0 || difficulty > MAX_POW_BITS) return null;
  try {
    decodePowToken(token);
  } catch {
    return null;
  }
  return { token, difficulty };
}

function randomStart(): number {
  // A random first nonce below 2^48: the same body paid twice under one
  // token then gets a different solution instead of a 409.
  const r = new Uint32Array(2);
  crypto.getRandomValues(r);
  return (r[0]! & 0xffff) * 0x100000000 + r[1]!;
}

/** Statuses of a refused proof after which solving again can help (PROTOCOL.md). */
const RETRY_STATUSES = new Set([403, 409, 428]);

/**
 * POSTs body to endpoint (relative to the node's base URL, e.g.
 * "room/abc…" or "token") with a proof of work, retrying once on a
 * refused proof. Resolves with the answer when its status is in ok;
 * rejects with NodeError otherwise, carrying the node's error line.
 */
export async function paidPost(
  node: string,
  base: string,
  endpoint: string,
  body: Uint8Array,
  ok: readonly number[],
  opts: PaidOptions,
  contentType?: string,
): Promise<JsonAnswer> {
  const signal = checkSignal(opts.signal);
  const timeoutMs = checkTimeout(opts.timeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  const maxBits = opts.maxBits ?? DEFAULT_MAX_POW_BITS;
  if (!Number.isInteger(maxBits) || maxBits < 0 || maxBits > MAX_POW_BITS) {
    throw new TypeError(`maxBits must be an integer in 0..${MAX_POW_BITS}`);
  }
  const binding = powBinding(endpoint, body);
  const url = new URL(endpoint, base).href;
  let c = await challenge(node, base, opts, timeoutMs);
  for (let attempt = 0; ; attempt++) {
    if (c.difficulty > maxBits) {
      throw new NodeError(
        'too-expensive',
        node,
        `the node asks ${c.difficulty} bits of work, more than maxBits ${maxBits}; it is busy, try another node`,
      );
    }
    const nonce = await solveBinding(c.token, binding, c.difficulty, { start: randomStart(), ...(signal ? { signal } : {}) });
    const headers: Record<string, string> = { [POW_HEADER]: powHeader(c.token, nonce) };
    if (contentType !== undefined) headers['Content-Type'] = contentType;
    const sentAt = Date.now();
    const a = await requestJson(node, url, { method: 'POST', headers, body }, { signal, timeoutMs });
    if (ok.includes(a.status)) return a;
    if (!RETRY_STATUSES.has(a.status) || attempt > 0) throw refused(node, `POST /${endpoint}`, a);
    const fresh = challengeIn(a.body);
    if (fresh !== null) {
      c = remember(base, fresh.token, fresh.difficulty, c.ttlMs, sentAt);
    } else {
      // A refusal without a challenge (say, a proxy's error page): ask
      // for one the usual way.
      challenges.delete(base);
      c = await challenge(node, base, signal ? { signal } : {}, timeoutMs);
    }
  }
}
