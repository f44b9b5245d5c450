// The keyhole auth exchange (kps/auth.go). KPS pins only the listener's
// certificate; keyhole adds identity keys on both sides. Each side signs
// the connection's channel binding with its Ed25519 key, so a signature
// cannot be replayed on another connection, and the role byte stops a
// peer from reflecting the dialer's own proof back at it.
//
//   dialer   -> listener: "KHAUTH1" 0x00 0x02 | dialer key (32) | sig (64)
//   listener -> dialer:   "KHAUTH1" 0x01 0x02 | listener key (32) | sig (64)

import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesEqual, concatBytes, utf8 } from './bytes.js';
import { KpsError } from './errors.js';

/** Magic that opens both auth messages. */
export const AUTH_MAGIC = 'KHAUTH1';
/** Domain label of the signed message. */
export const AUTH_SIGN_LABEL = 'keyhole-kps-auth-v1';
/** Domain label of the WebRTC channel binding. */
export const BINDING_LABEL = 'keyhole-kps-binding-webrtc-v1';
/** Role byte of the dialer's message. */
export const ROLE_DIALER = 0;
/** Role byte of the listener's message. */
export const ROLE_LISTENER = 1;
/**
 * Binding mode 2: SHA-256 over both DTLS certificate digests, used on
 * WebRTC because neither pion nor the browser exposes the DTLS exporter.
 */
export const MODE_FINGERPRINTS = 2;
/** Length of either auth message: magic, role, mode, key, signature. */
export const AUTH_MSG_LEN = AUTH_MAGIC.length + 2 + 32 + 64;

/**
 * Something that proves an Ed25519 identity: its public key and a signing
 * function. Exposed so an application can keep its key outside this
 * library (a non-extractable WebCrypto key, an extension, hardware).
 */
export interface Signer {
  /** The 32-byte Ed25519 public key. */
  readonly publicKey: Uint8Array;
  /** A 64-byte Ed25519 signature over msg. */
  sign(msg: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

/**
 * A signer from a 32-byte Ed25519 seed (the same seed Go's
 * ed25519.NewKeyFromSeed takes), or from a fresh random one when seed is
 * omitted: dials are then unlinkable to each other.
 */
export function seedSigner(seed?: Uint8Array): Signer {
  let sk: Uint8Array;
  if (seed === undefined) {
    sk = ed25519.utils.randomSecretKey();
  } else {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) {
      throw new TypeError('auth.seed must be a 32-byte Uint8Array (an Ed25519 seed)');
    }
    sk = seed.slice();
  }
  const publicKey = ed25519.getPublicKey(sk);
  return { publicKey, sign: (msg) => ed25519.sign(msg, sk) };
}

/**
 * The WebRTC channel binding: SHA-256(label | listener cert digest |
 * dialer cert digest). Only the holders of both certificates' keys could
 * complete this DTLS handshake, so the pair names this one connection.
 */
export function fingerprintBinding(listenerDigest: Uint8Array, dialerDigest: Uint8Array): Uint8Array {
  return sha256(concatBytes(utf8(BINDING_LABEL), listenerDigest, dialerDigest));
}

/** The bytes each side signs: label | role | mode | binding. */
export function authSigned(role: number, mode: number, binding: Uint8Array): Uint8Array {
  return concatBytes(utf8(AUTH_SIGN_LABEL), Uint8Array.of(role, mode), binding);
}

/** Builds this side's auth message for role over binding. */
export async function authMessage(role: number, binding: Uint8Array, signer: Signer): Promise<Uint8Array> {
  if (!(signer.publicKey instanceof Uint8Array) || signer.publicKey.length !== 32) {
    throw new TypeError('auth signer publicKey must be 32 bytes');
  }
  const sig = await signer.sign(authSigned(role, MODE_FINGERPRINTS, binding));
  if (!(sig instanceof Uint8Array) || sig.length !== 64) throw new TypeError('auth signer must return a 64-byte signature');
  return concatBytes(utf8(AUTH_MAGIC), Uint8Array.of(role, MODE_FINGERPRINTS), signer.publicKey, sig);
}

/**
 * Decodes a point strictly, as the Go side's identity.VerifyStrict does:
 * canonical encoding only, and no small-order points.
 */
function strictPoint(b: Uint8Array): boolean {
  try {
    const p = ed25519.Point.fromBytes(b, false);
    return bytesEqual(p.toBytes(), b) && !p.isSmallOrder();
  } catch {
    return false;
  }
}

const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function scalarCanonical(s: Uint8Array): boolean {
  let v = 0n;
  for (let i = s.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(s[i]!);
  return v < L;
}

/** Strict Ed25519 verification, matching the Go side's rules. */
export function verifyStrict(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  if (pub.length !== 32 || sig.length !== 64) return false;
  if (!scalarCanonical(sig.subarray(32)) || !strictPoint(pub) || !strictPoint(sig.subarray(0, 32))) return false;
  try {
    return ed25519.verify(sig, msg, pub, { zip215: false });
  } catch {
    return false;
  }
}

const failed = 'kps: identity check failed: ';

/**
 * Checks the listener's reply against our binding and returns its key.
 * Each failure is a KpsError 'permission-denied' whose message names the
 * check, except a reply that is not an auth message at all, which is a
 * 'protocol-error' (most likely a plain KPS listener).
 */
export function parseListenerMessage(b: Uint8Array, binding: Uint8Array): Uint8Array {
  if (b.length !== AUTH_MSG_LEN || !bytesEqual(b.subarray(0, AUTH_MAGIC.length), utf8(AUTH_MAGIC))) {
    throw new KpsError(
      'protocol-error',
      failed + 'the peer did not answer the keyhole auth exchange (a plain KPS listener? dial it with auth: false)',
    );
  }
  const role = b[AUTH_MAGIC.length]!;
  const mode = b[AUTH_MAGIC.length + 1]!;
  if (role !== ROLE_LISTENER) {
    throw new KpsError('permission-denied', failed + `wrong role byte ${role} in the listener's message (a reflected message?)`);
  }
  if (mode !== MODE_FINGERPRINTS) {
    throw new KpsError('permission-denied', failed + `wrong binding mode ${mode} (the peer derived its binding another way)`);
  }
  const pub = b.slice(AUTH_MAGIC.length + 2, AUTH_MAGIC.length + 34);
  const sig = b.subarray(AUTH_MAGIC.length + 34);
  if (!verifyStrict(pub, authSigned(ROLE_LISTENER, MODE_FINGERPRINTS, binding), sig)) {
    throw new KpsError(
      'permission-denied',
      failed + "the listener's signature over the channel binding does not verify",
    );
  }
  return pub;
}
