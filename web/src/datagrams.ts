// Connection-level datagrams (SPEC 7) over the reserved unreliable,
// unordered channel id 1.

import { asBytes } from './bytes.js';
import { KpsError } from './errors.js';

/**
 * The WebRTC datagram payload limit, the same hard 1200 bytes the Go side
 * enforces: larger sends are rejected with 'too-large' and this number,
 * instead of being fragmented by SCTP into something no longer unreliable.
 */
export const MAX_DATAGRAM_PAYLOAD_SIZE = 1200;

/** Inbound datagrams held for the application; the oldest is dropped beyond this. */
export const DATAGRAM_QUEUE_LEN = 256;

/**
 * Above this much queued on the datagram channel, sends are dropped:
 * datagrams are best-effort, and queueing megabytes of them would only
 * add latency (and make the browser throw once its buffer is full).
 */
const DATAGRAM_SEND_BUFFER = 1 << 20;

/** What the datagram endpoint needs from its connection. */
export interface DatagramHost {
  /** The connection's close error, or null while it is open. */
  connError(): KpsError | null;
}

/**
 * Unreliable, unordered, size-limited messages bound to the connection.
 * `incoming` is bounded (256, drop-oldest) because datagrams arrive
 * unsolicited; it ends when the connection closes.
 */
export class Datagrams {
  /** Datagrams from the peer, oldest dropped when 256 wait unread. */
  readonly incoming: ReadableStream<Uint8Array>;

  readonly #dc: RTCDataChannel;
  readonly #host: DatagramHost;
  #queue: Uint8Array[] = [];
  #ctl!: ReadableStreamDefaultController<Uint8Array>;
  #wake: (() => void) | null = null;
  #ended = false;
  #cancelled = false;

  /** @internal The connection creates its datagram endpoint. */
  constructor(dc: RTCDataChannel, host: DatagramHost) {
    this.#dc = dc;
    this.#host = host;
    dc.binaryType = 'arraybuffer';
    this.incoming = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.#ctl = c;
        },
        pull: (c) => {
          const next = this.#queue.shift();
          if (next !== undefined) {
            c.enqueue(next);
            return;
          }
          if (this.#ended) {
            c.close();
            return;
          }
          return new Promise<void>((resolve) => {
            this.#wake = resolve;
          });
        },
        cancel: () => {
          this.#cancelled = true;
          this.#queue = [];
        },
      },
      // Nothing buffers inside the stream: every datagram waits in the
      // drop-oldest queue until a read asks for it.
      { highWaterMark: 0 },
    );
    dc.addEventListener('message', (ev) => {
      if (ev.data instanceof ArrayBuffer) this.#push(new Uint8Array(ev.data));
    });
  }

  /**
   * Sends one datagram (best effort: it may never arrive). Rejects with
   * KpsError 'too-large' (maxDatagramPayloadSize 1200) over the limit, and
   * with the connection's error once it is closed.
   */
  async send(bytes: Uint8Array): Promise<void> {
    const b = asBytes(bytes, 'datagram');
    if (b.length > MAX_DATAGRAM_PAYLOAD_SIZE) {
      throw new KpsError(
        'too-large',
        `kps: datagram of ${b.length} bytes is too large: this connection carries at most ${MAX_DATAGRAM_PAYLOAD_SIZE}`,
        { maxDatagramPayloadSize: MAX_DATAGRAM_PAYLOAD_SIZE },
      );
    }
    const cerr = this.#host.connError();
    if (cerr !== null) throw cerr;
    if (this.#dc.readyState !== 'open') throw new KpsError('closed', 'kps: the datagram channel is closed');
    if (this.#dc.bufferedAmount >= DATAGRAM_SEND_BUFFER) return; // dropped, as a full socket would
    try {
      this.#dc.send(b.slice()); // a copy: the caller may reuse its buffer
    } catch (e) {
      throw this.#host.connError() ?? new KpsError('network-error', `kps: sending a datagram failed: ${String(e)}`, { cause: e });
    }
  }

  #push(b: Uint8Array): void {
    if (this.#ended || this.#cancelled) return;
    if (this.#wake !== null) {
      const w = this.#wake;
      this.#wake = null;
      this.#ctl.enqueue(b);
      w();
      return;
    }
    this.#queue.push(b);
    if (this.#queue.length > DATAGRAM_QUEUE_LEN) this.#queue.shift();
  }

  /** @internal The connection closed: `incoming` ends after what is queued. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#wake !== null) {
      const w = this.#wake;
      this.#wake = null;
      if (!this.#cancelled) this.#ctl.close();
      w();
    }
  }
}
