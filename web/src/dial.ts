// dial(): WebRTC-direct to a KPS address (SPEC 5.2), then the keyhole
// auth exchange unless the caller opts out.

import { parseAddress, type KpsAddress } from './address.js';
import {
  AUTH_MSG_LEN,
  ROLE_DIALER,
  authMessage,
  fingerprintBinding,
  parseListenerMessage,
  seedSigner,
  type Signer,
} from './auth.js';
import { bytesEqual, concatBytes, toHex } from './bytes.js';
import { Connection, connectionInternals } from './connection.js';
import { KpsError } from './errors.js';
import { icePassword, mungeOffer, newUfrag, sha256Fingerprint, synthesizeAnswer } from './sdp.js';
import { sha256 } from '@noble/hashes/sha2.js';

/** Dial timeout when none is given, as on the Go side. */
export const DEFAULT_DIAL_TIMEOUT_MS = 15_000;

/** The keyhole identity exchange settings of a dial. */
export interface AuthOptions {
  /**
   * 32-byte Ed25519 seed of the identity to prove. Default: a fresh
   * ephemeral key per dial, so dials are unlinkable.
   */
  seed?: Uint8Array;
  /** The listener's Ed25519 key (32 bytes) to require; any key is accepted when omitted. */
  peerKey?: Uint8Array;
  /** Proves the identity with a key held elsewhere; takes precedence over seed. */
  signer?: Signer;
}

/** Options of dial(). */
export interface DialOptions {
  /** Bounds the whole dial, handshake and auth exchange (default 15000 ms). */
  timeoutMs?: number;
  /** Aborting it abandons the dial; dial then rejects with KpsError 'cancelled'. */
  signal?: AbortSignal;
  /**
   * The keyhole auth exchange (default on, with an ephemeral key). false
   * makes a plain KPS dial, for listeners started with --plain.
   */
  auth?: false | AuthOptions;
}

function checkOptions(opts: DialOptions): { timeoutMs: number; signer: Signer | null; peerKey: Uint8Array | null } {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('dial options must be an object');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
    throw new TypeError('timeoutMs must be a positive number of milliseconds');
  }
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) {
    throw new TypeError('signal must be an AbortSignal');
  }
  const auth = opts.auth ?? {};
  if (auth === false) return { timeoutMs, signer: null, peerKey: null };
  if (typeof auth !== 'object' || auth === null) throw new TypeError('auth must be false or an object');
  let peerKey: Uint8Array | null = null;
  if (auth.peerKey !== undefined) {
    if (!(auth.peerKey instanceof Uint8Array) || auth.peerKey.length !== 32) {
      throw new TypeError('auth.peerKey must be a 32-byte Uint8Array (an Ed25519 public key)');
    }
    peerKey = auth.peerKey.slice();
  }
  const signer = auth.signer ?? seedSigner(auth.seed);
  return { timeoutMs, signer, peerKey };
}

/** Which phase a dial is in, for the timeout message. */
type Phase = 'connecting' | 'auth';

/**
 * Connects to a KPS address (`ip:port:certhash` or `[v6]:port:certhash`)
 * over WebRTC-direct, pinning the listener's certificate to the certhash,
 * and (unless `auth: false`) runs the keyhole auth exchange, in which
 * both sides prove an Ed25519 identity bound to this connection.
 * Rejects with TypeError for a malformed address or options and with
 * KpsError otherwise: 'timeout', 'cancelled', 'permission-denied' (the
 * listener refused, or its identity failed a check), 'protocol-error'.
 */
export async function dial(addr: string, opts: DialOptions = {}): Promise<Connection> {
  const a = parseAddress(addr);
  const { timeoutMs, signer, peerKey } = checkOptions(opts);
  const signal = opts.signal;
  const cancelled = () =>
    new KpsError('cancelled', 'kps: dial cancelled', signal?.reason === undefined ? {} : { cause: signal.reason });
  if (signal?.aborted) throw cancelled();

  let phase: Phase = 'connecting';
  let stopReject!: (e: unknown) => void;
  const stop = new Promise<never>((_, reject) => {
    stopReject = reject;
  });
  stop.catch(() => {}); // observed through race() only
  const timer = setTimeout(() => stopReject(timeoutError(a, timeoutMs, phase)), timeoutMs);
  const onAbort = () => stopReject(cancelled());
  signal?.addEventListener('abort', onAbort, { once: true });
  const race = <T>(p: Promise<T>): Promise<T> => Promise.race([p, stop]);

  const pc = new RTCPeerConnection({});
  let conn: Connection | null = null;
  try {
    const control = pc.createDataChannel('_kps_bootstrap', { negotiated: true, id: 0 });
    const dgram = pc.createDataChannel('_kps_datagrams', { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 });
    control.binaryType = 'arraybuffer';
    dgram.binaryType = 'arraybuffer';
    conn = new Connection(pc, control, dgram);

    const offer = await race(pc.createOffer());
    const ufrag = newUfrag();
    const pwd = icePassword(a.digest, ufrag);
    await race(pc.setLocalDescription({ type: 'offer', sdp: mungeOffer(offer.sdp ?? '', ufrag, pwd) }));
    const dialerDigest = sha256Fingerprint(pc.localDescription?.sdp ?? '');
    await race(pc.setRemoteDescription({ type: 'answer', sdp: synthesizeAnswer(a, ufrag, pwd) }));
    await race(connected(pc, control, dgram));
    checkRemoteCertificate(pc, a);
    connectionInternals(conn).markEstablished();

    if (signer !== null) {
      phase = 'auth';
      const binding = fingerprintBinding(a.digest, dialerDigest);
      const key = await race(runAuth(conn, binding, signer));
      if (peerKey !== null && !bytesEqual(key, peerKey)) {
        await conn.close('permission-denied', 'keyhole auth failed');
        throw new KpsError(
          'permission-denied',
          'kps: identity check failed: the listener holds a different key than the one dialed ' +
            `(dialed ${toHex(peerKey)}, got ${toHex(key)})`,
        );
      }
    }
    return conn;
  } catch (e) {
    const err = asDialError(e, a);
    if (conn !== null) {
      if (phase === 'auth' && err.code === 'permission-denied' && !err.remote) {
        void conn.close('permission-denied', 'keyhole auth failed');
      } else {
        connectionInternals(conn).abandon(err);
      }
    } else {
      pc.close();
    }
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

function timeoutError(a: KpsAddress, ms: number, phase: Phase): KpsError {
  const where = a.family === 6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
  if (phase === 'auth') {
    return new KpsError('timeout', `kps: ${where} did not complete the keyhole auth exchange within ${ms} ms`);
  }
  return new KpsError(
    'timeout',
    `kps: no WebRTC answer from ${where} within ${ms} ms: the listener is down or unreachable, ` +
      'or the certhash is wrong (a listener ignores ICE checks keyed to another certhash)',
  );
}

function asDialError(e: unknown, a: KpsAddress): KpsError {
  if (e instanceof KpsError) return e;
  const where = a.family === 6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
  return new KpsError('internal-error', `kps: WebRTC to ${where}: ${String(e)}`, { cause: e });
}

/** Resolves once ICE+DTLS are connected and both reserved channels are open. */
function connected(pc: RTCPeerConnection, control: RTCDataChannel, dgram: RTCDataChannel): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const st = pc.connectionState;
      if (st === 'failed' || st === 'closed' || control.readyState === 'closed' || dgram.readyState === 'closed') {
        cleanup();
        const dtlsFailed = pc.sctp?.transport.state === 'failed';
        reject(
          dtlsFailed
            ? new KpsError(
                'permission-denied',
                "kps: the DTLS handshake failed: the listener's certificate does not match the certhash in the address",
              )
            : new KpsError('network-error', `kps: the WebRTC connection failed (state ${st})`),
        );
        return;
      }
      if (st === 'connected' && control.readyState === 'open' && dgram.readyState === 'open') {
        cleanup();
        resolve();
      }
    };
    const cleanup = () => {
      pc.removeEventListener('connectionstatechange', check);
      control.removeEventListener('open', check);
      dgram.removeEventListener('open', check);
      control.removeEventListener('close', check);
      dgram.removeEventListener('close', check);
    };
    pc.addEventListener('connectionstatechange', check);
    control.addEventListener('open', check);
    dgram.addEventListener('open', check);
    control.addEventListener('close', check);
    dgram.addEventListener('close', check);
    check();
  });
}

/**
 * Belt and braces on top of the browser's fingerprint check: where the
 * browser exposes the listener's DTLS certificate, its SHA-256 must be
 * the certhash digest.
 */
function checkRemoteCertificate(pc: RTCPeerConnection, a: KpsAddress): void {
  const dtls = pc.sctp?.transport as (RTCDtlsTransport & { getRemoteCertificates?: () => ArrayBuffer[] }) | undefined;
  const certs = dtls?.getRemoteCertificates?.();
  if (certs === undefined || certs.length === 0) return;
  if (!bytesEqual(sha256(new Uint8Array(certs[0]!)), a.digest)) {
    throw new KpsError('permission-denied', "kps: the listener's certificate does not match the certhash in the address");
  }
}

/** Reads up to max bytes, stopping early at EOF. */
async function readUpTo(s: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const reader = s.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    while (n < max) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      n += value.length;
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(...parts);
}

/**
 * The dialer's half of the keyhole auth exchange, on the first stream it
 * opens: send our proof and FIN, read the listener's, check it. Returns
 * the listener's key.
 */
async function runAuth(conn: Connection, binding: Uint8Array, signer: Signer): Promise<Uint8Array> {
  const msg = await authMessage(ROLE_DIALER, binding, signer);
  const s = await conn.openStream();
  let reply: Uint8Array;
  try {
    const w = s.writable.getWriter();
    await w.write(msg);
    await w.close();
    reply = await readUpTo(s.readable, AUTH_MSG_LEN);
  } catch (e) {
    throw authReadError(e);
  }
  await s.close();
  // Like the Go side: the reply is exactly the first 105 bytes.
  const key = parseListenerMessage(reply.subarray(0, AUTH_MSG_LEN), binding);
  connectionInternals(conn).markKeyhole(key);
  return key;
}

/** Maps a failure while exchanging auth messages to what it means. */
function authReadError(e: unknown): unknown {
  if (!(e instanceof KpsError)) return e;
  if (e.remote && e.code === 'permission-denied') {
    return new KpsError('permission-denied', `kps: the listener refused this identity${e.reason ? ': ' + e.reason : ''}`, {
      remote: true,
      reason: e.reason,
      cause: e,
    });
  }
  return new KpsError(e.wireCode, `kps: the connection ended during the keyhole auth exchange: ${e.message}`, {
    remote: e.remote,
    reason: e.reason,
    cause: e,
  });
}
