// Stream framing over a data channel (SPEC 6.2): each message is one
// frame, a type byte and a payload, which is how a message-oriented SCTP
// channel gets QUIC-like EOF, reset and stop-sending.

import { KpsError, normalizeWireCode } from './errors.js';

/** DATA: payload bytes append to the peer's read buffer. */
export const FRAME_DATA = 0x00;
/** FIN: the sender's write half is finished; EOF after earlier DATA. */
export const FRAME_FIN = 0x01;
/** RESET + u32 BE code: the sender aborted its write half. */
export const FRAME_RESET = 0x02;
/** STOP_SENDING + u32 BE code: the sender no longer reads. */
export const FRAME_STOP_SENDING = 0x03;

/**
 * Largest DATA payload this side sends (as the Go side does): larger
 * writes are split, keeping each SCTP message small enough not to stall
 * other streams behind it.
 */
export const MAX_FRAME_PAYLOAD = 16 * 1024;

/** A decoded frame. */
export type Frame =
  | { readonly type: 'data'; readonly payload: Uint8Array }
  | { readonly type: 'fin' }
  | { readonly type: 'reset'; readonly code: number }
  | { readonly type: 'stop-sending'; readonly code: number };

function readCode(msg: Uint8Array): number {
  // A code shorter than 4 bytes reads as 0, as every KPS implementation does.
  if (msg.length < 5) return 0;
  const code = ((msg[1]! << 24) | (msg[2]! << 16) | (msg[3]! << 8) | msg[4]!) >>> 0;
  return normalizeWireCode(code);
}

/**
 * Decodes one data-channel message. Returns null for an empty message (a
 * no-op); throws KpsError 'protocol-error' for an unknown type, which the
 * stream answers by resetting both halves.
 */
export function parseFrame(msg: Uint8Array): Frame | null {
  if (!(msg instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
  if (msg.length === 0) return null;
  switch (msg[0]) {
    case FRAME_DATA:
      return { type: 'data', payload: msg.subarray(1) };
    case FRAME_FIN:
      return { type: 'fin' };
    case FRAME_RESET:
      return { type: 'reset', code: readCode(msg) };
    case FRAME_STOP_SENDING:
      return { type: 'stop-sending', code: readCode(msg) };
    default:
      throw new KpsError('protocol-error', `kps: unknown frame type 0x${msg[0]!.toString(16).padStart(2, '0')}`);
  }
}

/** A DATA frame carrying chunk (the caller keeps it within MAX_FRAME_PAYLOAD). */
export function encodeData(chunk: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(1 + chunk.length);
  out[0] = FRAME_DATA;
  out.set(chunk, 1);
  return out;
}

/** The FIN frame. */
export function encodeFin(): Uint8Array<ArrayBuffer> {
  return Uint8Array.of(FRAME_FIN);
}

/** A RESET or STOP_SENDING frame with a big-endian uint32 code. */
export function encodeCode(type: typeof FRAME_RESET | typeof FRAME_STOP_SENDING, code: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, code >>> 0, false);
  return out;
}
