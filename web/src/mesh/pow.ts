// The community node's proof of work (node/PROTOCOL.md, node/pow/pow.go).
// A node with no accounts stays open by charging CPU per request: the
// client proves it hashed about 2^bits times for this exact request,
// under a challenge the node issued recently.
//
//   binding = SHA-256(endpoint || "\n" || body)
//   digest  = SHA-256("keyhole-node-pow-v1" || token (24 raw bytes) || binding || nonce (8 bytes BE))
//   work    = leading zero bits of digest, at least the node's difficulty

import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, decodeBase64UrlNoPad, utf8 } from '../bytes.js';

/** Decoded length of a token: 8-byte issue time, 16-byte MAC. */
export const POW_TOKEN_LEN = 24;
/** Largest nonce, so it is exact in a JavaScript number (as the node requires). */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER;
/** Largest difficulty the protocol defines; beyond it nothing is solvable. */
export const MAX_POW_BITS = 64;
/** Header carrying a solution. */
export const POW_HEADER = 'X-Keyhole-Pow';

const DIGEST_LABEL = utf8('keyhole-node-pow-v1');
/** Attempts between yields to the event loop: a few ms of hashing, so a page stays responsive. */
const ATTEMPTS_PER_SLICE = 4096;

/** Decodes a token, or throws TypeError: solving for a malformed token would be wasted work. */
export function decodePowToken(token: string): Uint8Array {
  const raw = typeof token === 'string' && token.length === 32 ? decodeBase64UrlNoPad(token) : null;
  if (raw === null || raw.length !== POW_TOKEN_LEN) {
    throw new TypeError(`not a node proof-of-work token (32 base64url characters): ${JSON.stringify(token)}`);
  }
  return raw;
}

/** The body as the bytes the node sees: strings are sent as UTF-8. */
export function bodyBytes(body: string | Uint8Array): Uint8Array {
  if (typeof body === 'string') return utf8(body);
  if (body instanceof Uint8Array) return body;
  throw new TypeError('a request body must be a string or a Uint8Array');
}

/**
 * What a solution pays for. Binding the endpoint and the exact body means
 * work done for one post cannot be spent on another.
 */
export function powBinding(endpoint: string, body: string | Uint8Array): Uint8Array {
  return sha256(concatBytes(utf8(endpoint), Uint8Array.of(0x0a), bodyBytes(body)));
}

function prefix(rawToken: Uint8Array, binding: Uint8Array): Uint8Array {
  if (binding.length !== 32) throw new TypeError('a proof-of-work binding is 32 bytes');
  return concatBytes(DIGEST_LABEL, rawToken, binding);
}

function putNonce(buf: Uint8Array, nonce: number): void {
  const hi = Math.floor(nonce / 0x100000000);
  const lo = nonce >>> 0;
  buf[0] = hi >>> 24;
  buf[1] = (hi >>> 16) & 0xff;
  buf[2] = (hi >>> 8) & 0xff;
  buf[3] = hi & 0xff;
  buf[4] = lo >>> 24;
  buf[5] = (lo >>> 16) & 0xff;
  buf[6] = (lo >>> 8) & 0xff;
  buf[7] = lo & 0xff;
}

/** The digest whose leading zeros are the work (for checks and tests). */
export function powDigest(token: string, binding: Uint8Array, nonce: number): Uint8Array {
  checkNonce(nonce);
  const n = new Uint8Array(8);
  putNonce(n, nonce);
  return sha256(concatBytes(prefix(decodePowToken(token), binding), n));
}

/** Leading zero bits of a digest. */
export function leadingZeroBits(d: Uint8Array): number {
  let n = 0;
  for (const b of d) {
    if (b !== 0) return n + Math.clz32(b) - 24;
    n += 8;
  }
  return n;
}

function checkNonce(nonce: number): void {
  if (!Number.isSafeInteger(nonce) || nonce < 0) throw new TypeError(`a nonce is an integer in 0..2^53-1, got ${nonce}`);
}

/** Options of solve(). */
export interface SolveOptions {
  /** Abandons the search; solve then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * First nonce to try (default 0, which gives the smallest nonce, as the
   * Go solver does). A random start keeps two solutions for the same
   * token and body distinct, so the second is not refused as reused.
   */
  start?: number;
}

/** Hands the event loop a turn without the 4 ms clamp nested setTimeout gets. */
function yieldToEventLoop(): Promise<void> {
  const s = (globalThis as { scheduler?: { yield?: () => Promise<void> } }).scheduler;
  if (typeof s?.yield === 'function') return s.yield();
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        ch.port1.close();
        resolve();
      };
      ch.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Finds a nonce that gives at least bits of work for token and the
 * request (endpoint, body) and returns it; from start 0 it is the
 * smallest one, the same the Go solver finds. Expected cost is 2^bits
 * hashes; the search runs in slices between which the page stays
 * responsive, and the signal ends it.
 */
export async function solve(
  token: string,
  endpoint: string,
  body: string | Uint8Array,
  bits: number,
  opts: SolveOptions = {},
): Promise<number> {
  return solveBinding(token, powBinding(endpoint, body), bits, opts);
}

/** solve() for a binding already computed. */
export async function solveBinding(token: string, binding: Uint8Array, bits: number, opts: SolveOptions = {}): Promise<number> {
  const raw = decodePowToken(token);
  if (!Number.isInteger(bits) || bits < 0 || bits > MAX_POW_BITS) {
    throw new TypeError(`a difficulty is an integer in 0..${MAX_POW_BITS}, got ${bits}`);
  }
  const start = opts.start ?? 0;
  checkNonce(start);
  const signal = opts.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (signal?.aborted) throw signal.reason;

  // The 75-byte prefix fills one SHA-256 block and spills 11 bytes: hash
  // it once, then per attempt copy that state and add only the nonce.
  const base = sha256.create().update(prefix(raw, binding));
  const work = base.clone();
  const nonceBuf = new Uint8Array(8);
  const out = new Uint8Array(32);
  const fullBytes = bits >>> 3;
  const restMask = (0xff00 >>> (bits & 7)) & 0xff; // top bits of the next byte that must be zero
  let nonce = start;
  for (;;) {
    const end = Math.min(nonce + ATTEMPTS_PER_SLICE, MAX_NONCE + 1);
    for (; nonce < end; nonce++) {
      putNonce(nonceBuf, nonce);
      base._cloneInto(work);
      work.update(nonceBuf);
      work.digestInto(out);
      let ok = true;
      for (let i = 0; i < fullBytes; i++) {
        if (out[i] !== 0) {
          ok = false;
          break;
        }
      }
      if (ok && (fullBytes >= 32 || (out[fullBytes]! & restMask) === 0)) return nonce;
    }
    if (nonce > MAX_NONCE) throw new RangeError(`no nonce from ${start} to 2^53-1 gives ${bits} bits of work`);
    await yieldToEventLoop();
    if (signal?.aborted) throw signal.reason;
  }
}

/** The X-Keyhole-Pow header value for a solution. */
export function powHeader(token: string, nonce: number): string {
  checkNonce(nonce);
  return `${token}.${nonce}`;
}
