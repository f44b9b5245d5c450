// Byte helpers shared by the address, SDP and auth code. Small and
// strict on purpose: every decoder here sits on an input a peer or a user
// controls.

const B64_STD = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function b64encode(b: Uint8Array, alphabet: string): string {
  let out = '';
  let i = 0;
  for (; i + 3 <= b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out += alphabet[n >>> 18]! + alphabet[(n >>> 12) & 63]! + alphabet[(n >>> 6) & 63]! + alphabet[n & 63]!;
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i]! << 16;
    out += alphabet[n >>> 18]! + alphabet[(n >>> 12) & 63]!;
  } else if (rest === 2) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8);
    out += alphabet[n >>> 18]! + alphabet[(n >>> 12) & 63]! + alphabet[(n >>> 6) & 63]!;
  }
  return out;
}

/** Standard base64 without padding: the ICE password encoding (SPEC 5.2). */
export function base64StdNoPad(b: Uint8Array): string {
  return b64encode(b, B64_STD);
}

/** URL-safe base64 without padding: the multibase 'u' certhash encoding (SPEC 3). */
export function base64UrlNoPad(b: Uint8Array): string {
  return b64encode(b, B64_URL);
}

/**
 * Decodes unpadded base64url, or returns null. Only the canonical encoding
 * is accepted (unused trailing bits must be zero), so one certhash has
 * exactly one spelling.
 */
export function decodeBase64UrlNoPad(s: string): Uint8Array | null {
  if (s.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((s.length * 6) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const v = B64_URL.indexOf(s[i]!);
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) return null;
  return out;
}

/** Lower-case hex, as the ICE ufrag is written. */
export function toHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Concatenates byte arrays into a fresh one. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Byte equality; keys and digests compared here are public values. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

/** UTF-8 encoding of a string. */
export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** Lenient UTF-8 decoding: a peer's close reason is shown, never parsed. */
export function fromUtf8(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/**
 * Copies any binary chunk an application may hand to a writer into a
 * Uint8Array view, and rejects everything else with a TypeError.
 */
export function asBytes(chunk: unknown, what: string): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`${what} must be a Uint8Array, ArrayBuffer or ArrayBufferView`);
}
