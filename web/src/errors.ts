// The KPS error-code registry (SPEC 9.1) and the one error class this
// library rejects with, so applications can branch on a stable code
// instead of parsing messages.

/**
 * Canonical names of the SPEC 9.1 registry. 'none' stands for wire code 0
 * ("no specific reason"). Names, not numbers, are what applications
 * compare against, so Go and JS code read the same.
 */
export type KpsErrorCode =
  | 'none'
  | 'cancelled'
  | 'closed'
  | 'reset'
  | 'timeout'
  | 'network-error'
  | 'protocol-error'
  | 'unsupported'
  | 'too-large'
  | 'queue-full'
  | 'permission-denied'
  | 'internal-error';

const NAMES: readonly KpsErrorCode[] = [
  'none',
  'cancelled',
  'closed',
  'reset',
  'timeout',
  'network-error',
  'protocol-error',
  'unsupported',
  'too-large',
  'queue-full',
  'permission-denied',
  'internal-error',
];

/** Wire value of 'internal-error', where unknown received codes land (SPEC 9.1). */
export const INTERNAL_ERROR = 11;

/**
 * Maps a received wire code into the registry: codes outside it become
 * internal-error, as SPEC 9.1 requires of receivers.
 */
export function normalizeWireCode(code: number): number {
  return Number.isInteger(code) && code >= 0 && code < NAMES.length ? code : INTERNAL_ERROR;
}

/** The registry name for a wire code (unknown codes name internal-error). */
export function codeName(code: number): KpsErrorCode {
  return NAMES[normalizeWireCode(code)]!;
}

/**
 * The wire code for a name or number an application passes in (close,
 * resetWrite, cancelRead). Throws TypeError for anything else, so a typo
 * does not silently go out as internal-error.
 */
export function toWireCode(code: number | KpsErrorCode): number {
  if (typeof code === 'number') {
    if (!Number.isInteger(code) || code < 0 || code > 0xffffffff) {
      throw new TypeError(`KPS error code must be a uint32, got ${code}`);
    }
    return code;
  }
  const i = NAMES.indexOf(code);
  if (i < 0) throw new TypeError(`unknown KPS error code name ${JSON.stringify(code)}`);
  return i;
}

/** Optional details a KpsError carries. */
export interface KpsErrorDetails {
  /** The peer caused it (reset, stop-sending, close), not this side. */
  remote?: boolean;
  /** A connection close reason, as the closing side wrote it. */
  reason?: string;
  /** For 'too-large' datagram sends: the current payload limit (SPEC 7). */
  maxDatagramPayloadSize?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * Every failure this library reports on purpose is a KpsError: the code
 * is the SPEC 9.1 name so applications need not parse messages, wireCode
 * is the number that travels in frames, and remote says which side did it.
 */
export class KpsError extends Error {
  /** SPEC 9.1 name; unknown wire codes read as 'internal-error'. */
  readonly code: KpsErrorCode;
  /** The registry number for code (what RESET/STOP_SENDING/close carry). */
  readonly wireCode: number;
  /** True when the peer caused it. */
  readonly remote: boolean;
  /** The close reason the peer (or this side) gave, '' if none. */
  readonly reason: string;
  /** Set on 'too-large' datagram errors: the limit the payload exceeded. */
  readonly maxDatagramPayloadSize?: number;

  constructor(code: KpsErrorCode | number, message: string, details: KpsErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'KpsError';
    this.wireCode = typeof code === 'number' ? normalizeWireCode(code) : toWireCode(code);
    this.code = codeName(this.wireCode);
    this.remote = details.remote ?? false;
    this.reason = details.reason ?? '';
    if (details.maxDatagramPayloadSize !== undefined) {
      this.maxDatagramPayloadSize = details.maxDatagramPayloadSize;
    }
  }
}

/**
 * The wire code to send when an application aborts or cancels with an
 * arbitrary reason: a KpsError keeps its code, anything else gets the
 * fallback.
 */
export function codeFromReason(reason: unknown, fallback: number): number {
  return reason instanceof KpsError ? reason.wireCode : fallback;
}
