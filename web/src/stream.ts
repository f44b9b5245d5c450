// A KPS stream (SPEC 6): an unnamed, reliable, ordered byte stream with
// QUIC-like half-close, mapped onto one RTCDataChannel with the SPEC 6.2
// framing.

import { asBytes } from './bytes.js';
import { KpsError, codeFromReason, codeName, toWireCode, type KpsErrorCode } from './errors.js';
import {
  FRAME_RESET,
  FRAME_STOP_SENDING,
  MAX_FRAME_PAYLOAD,
  encodeCode,
  encodeData,
  encodeFin,
  parseFrame,
  type Frame,
} from './framing.js';

/**
 * A write waits while this much is queued on the channel (SPEC 6.2
 * backpressure), as on the Go side.
 */
export const WRITE_HIGH_WATER = 1 << 20;
/** A blocked write wakes when the queue falls to this (bufferedamountlow). */
export const WRITE_LOW_WATER = WRITE_HIGH_WATER / 2;
/** Re-check period while blocked, in case an event raced the check. */
const WRITE_RECHECK_MS = 50;
/** How long a finished stream waits for its last frames before closing the channel. */
const FINISH_DRAIN_MS = 1000;
/** How long a channel close without FIN waits to learn whether the connection went down. */
const CLOSE_SETTLE_MS = 30;

/** What a stream needs from its connection. */
export interface StreamHost {
  /** The connection's close error, or null while it is open. */
  connError(): KpsError | null;
  /** True when the transport under the channel is gone (not just this channel). */
  transportGone(): boolean;
  /** The stream is finished; the connection stops tracking it. */
  forget(s: Stream): void;
}

/** A code as messages show it: its registry name, or the number when out of the registry. */
function describe(code: number): string {
  const name = codeName(code);
  if (name === 'none') return 'no reason';
  return name === 'internal-error' && code !== 11 ? `code ${code}` : name;
}

type ReadState = 'open' | 'eof' | 'reset' | 'cancelled' | 'failed';
type WriteState = 'open' | 'finished' | 'reset' | 'stopped' | 'failed';

/**
 * One bidirectional stream. Read from `readable` (ends at the peer's
 * FIN, errors with a KpsError on reset), write to `writable` (waits while
 * 1 MiB is queued), and use the methods for the QUIC-style operations
 * WHATWG streams cannot express (closeWrite with a writer held, codes).
 */
export class Stream {
  /** Bytes from the peer; closes on FIN (or a channel close), errors on RESET. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer; close() sends FIN, abort(reason) sends RESET. */
  readonly writable: WritableStream<Uint8Array>;

  readonly #dc: RTCDataChannel;
  readonly #host: StreamHost;
  #readCtl!: ReadableStreamDefaultController<Uint8Array>;
  #writeCtl!: WritableStreamDefaultController;
  #read: ReadState = 'open';
  #write: WriteState = 'open';
  #writeErr: KpsError | null = null;
  #lowWaiters: Array<() => void> = [];
  #channelClosed = false;
  #finishing = false;
  #finRequested = false;
  #closeWrite: Promise<void> | null = null;
  #inflight: Promise<void> = Promise.resolve();
  #onFirstMessage: (() => void) | null;

  /** @internal Wraps a channel; the connection creates streams. */
  constructor(dc: RTCDataChannel, host: StreamHost, onFirstMessage: (() => void) | null = null) {
    this.#dc = dc;
    this.#host = host;
    this.#onFirstMessage = onFirstMessage;
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = WRITE_LOW_WATER;
    this.readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#readCtl = c;
      },
      cancel: (reason) => {
        this.#cancelRead(codeFromReason(reason, toWireCode('cancelled')), false);
      },
    });
    this.writable = new WritableStream<Uint8Array>({
      start: (c) => {
        this.#writeCtl = c;
      },
      write: (chunk) => {
        const p = this.#writeChunk(chunk);
        this.#inflight = p.catch(() => {});
        return p;
      },
      close: () => this.#sendFin(),
      abort: (reason) => {
        this.#resetWrite(codeFromReason(reason, toWireCode('reset')), false);
      },
    });
    dc.addEventListener('message', (ev) => this.#onMessage(ev.data));
    dc.addEventListener('bufferedamountlow', () => this.#wakeWriters());
    dc.addEventListener('close', () => this.#onChannelClose());
  }

  /**
   * Finishes the write half: the peer reads EOF after everything written
   * before. Works whether or not a writer holds `writable`; prefer
   * writer.close() when you hold one. Resolves once FIN is queued; rejects
   * with the KpsError that ended the write half if it was reset.
   */
  closeWrite(): Promise<void> {
    this.#closeWrite ??= this.#doCloseWrite();
    return this.#closeWrite;
  }

  async #doCloseWrite(): Promise<void> {
    if (this.#write === 'finished') return;
    if (this.#writeErr !== null) throw this.#writeErr;
    if (!this.writable.locked) {
      await this.writable.close();
      return;
    }
    // A writer holds the stream: finish after the write in progress and
    // fail whatever the writer queued after this call.
    this.#finRequested = true;
    await this.#inflight;
    if (this.#write !== 'open') {
      if (this.#writeErr !== null) throw this.#writeErr;
      return;
    }
    this.#writeCtl.error(new KpsError('closed', 'kps: write after closeWrite()'));
    this.#finishWrite();
  }

  /**
   * Stops reading: unread and future bytes are dropped and the peer is
   * asked to stop sending (STOP_SENDING with code; its writes then fail
   * with that code). Reads on `readable` reject with a local KpsError.
   */
  cancelRead(code: number | KpsErrorCode = 'cancelled'): void {
    this.#cancelRead(toWireCode(code), true);
  }

  /**
   * Aborts the write half: the peer's reads fail with a KpsError carrying
   * code, not EOF. Bytes still queued may or may not arrive (SPEC 6.1).
   */
  resetWrite(code: number | KpsErrorCode = 'reset'): void {
    this.#resetWrite(toWireCode(code), true);
  }

  /**
   * Tears the stream down like the Go side's Close: finish writing (FIN)
   * and stop reading (STOP_SENDING 'closed').
   */
  async close(): Promise<void> {
    try {
      await this.closeWrite();
    } catch {
      // the write half had already failed; reading still stops
    }
    this.#cancelRead(toWireCode('closed'), true);
  }

  // --- writing ---------------------------------------------------------

  async #writeChunk(chunk: unknown): Promise<void> {
    if (this.#finRequested) throw new KpsError('closed', 'kps: write after closeWrite()');
    const bytes = asBytes(chunk, 'stream write');
    for (let off = 0; off < bytes.length; ) {
      await this.#waitWritable();
      const end = Math.min(bytes.length, off + MAX_FRAME_PAYLOAD);
      this.#send(encodeData(bytes.subarray(off, end)));
      off = end;
    }
  }

  /** Throws the write half's error, or waits while too much is queued. */
  async #waitWritable(): Promise<void> {
    for (;;) {
      this.#throwIfNotWritable();
      if (this.#dc.bufferedAmount < WRITE_HIGH_WATER) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, WRITE_RECHECK_MS);
        this.#lowWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  #throwIfNotWritable(): void {
    if (this.#writeErr !== null) throw this.#writeErr;
    const cerr = this.#host.connError();
    if (cerr !== null) throw cerr;
    if (this.#write === 'finished') {
      throw new KpsError('closed', 'kps: write on a stream whose write half is closed');
    }
    if (this.#dc.readyState !== 'open') {
      throw new KpsError('closed', 'kps: write on a stream whose channel is closed');
    }
  }

  #wakeWriters(): void {
    for (const w of this.#lowWaiters.splice(0)) w();
  }

  /** Sends a frame; a failure surfaces through the write half's state. */
  #send(frame: Uint8Array<ArrayBuffer>): void {
    try {
      this.#dc.send(frame);
    } catch (e) {
      const cerr = this.#host.connError();
      throw cerr ?? new KpsError('network-error', `kps: sending on the stream failed: ${String(e)}`, { cause: e });
    }
  }

  /** Best-effort control frame (RESET, STOP_SENDING): the stream may already be gone. */
  #sendQuiet(frame: Uint8Array<ArrayBuffer>): void {
    if (this.#dc.readyState !== 'open') return;
    try {
      this.#dc.send(frame);
    } catch {
      // the channel is closing; the peer learns from that instead
    }
  }

  async #sendFin(): Promise<void> {
    if (this.#write === 'finished') return;
    this.#throwIfWriteFailed();
    this.#finishWrite();
  }

  #throwIfWriteFailed(): void {
    if (this.#writeErr !== null) throw this.#writeErr;
    const cerr = this.#host.connError();
    if (cerr !== null) throw cerr;
  }

  #finishWrite(): void {
    this.#write = 'finished';
    this.#send(encodeFin());
    this.#maybeFinish();
  }

  #resetWrite(code: number, local: boolean): void {
    if (this.#write === 'finished' || this.#writeErr !== null) return;
    this.#write = 'reset';
    this.#writeErr = new KpsError(code, `kps: stream write half reset locally (${describe(code)})`);
    if (local) this.#writeCtl.error(this.#writeErr);
    this.#wakeWriters();
    this.#sendQuiet(encodeCode(FRAME_RESET, code));
    this.#maybeFinish();
  }

  // --- reading ---------------------------------------------------------

  #cancelRead(code: number, local: boolean): void {
    if (this.#read !== 'open') return;
    this.#read = 'cancelled';
    if (local) {
      this.#readCtl.error(new KpsError(code, `kps: stream reading cancelled locally (${describe(code)})`));
    }
    this.#sendQuiet(encodeCode(FRAME_STOP_SENDING, code));
    this.#maybeFinish();
  }

  #onMessage(data: unknown): void {
    if (this.#onFirstMessage !== null) {
      const f = this.#onFirstMessage;
      this.#onFirstMessage = null;
      f();
    }
    let frame: Frame | null;
    try {
      if (!(data instanceof ArrayBuffer)) {
        throw new KpsError('protocol-error', 'kps: text message on a stream channel');
      }
      frame = parseFrame(new Uint8Array(data));
    } catch {
      this.#protocolError();
      return;
    }
    if (frame === null) return;
    switch (frame.type) {
      case 'data':
        // Dropped after EOF, a reset or a local cancel.
        if (this.#read === 'open' && frame.payload.length > 0) this.#readCtl.enqueue(frame.payload);
        break;
      case 'fin':
        if (this.#read === 'open') {
          this.#read = 'eof';
          this.#readCtl.close();
        }
        break;
      case 'reset':
        if (this.#read === 'open' || this.#read === 'eof') {
          this.#read = 'reset';
          this.#readCtl.error(
            new KpsError(frame.code, `kps: stream reset by the peer (${describe(frame.code)})`, { remote: true }),
          );
        }
        break;
      case 'stop-sending':
        // Like QUIC: the peer no longer reads, so the write half is reset
        // with the peer's code.
        if (this.#write === 'open') {
          this.#write = 'stopped';
          this.#writeErr = new KpsError(frame.code, `kps: the peer stopped reading (${describe(frame.code)})`, {
            remote: true,
          });
          this.#writeCtl.error(this.#writeErr);
          this.#wakeWriters();
          this.#sendQuiet(encodeCode(FRAME_RESET, frame.code));
        }
        break;
    }
    this.#maybeFinish();
  }

  #protocolError(): void {
    const code = toWireCode('protocol-error');
    this.#resetWrite(code, true);
    this.#cancelRead(code, true);
  }

  // --- lifecycle -------------------------------------------------------

  /** Closes the channel once both halves are done, after the last frames leave. */
  #maybeFinish(): void {
    if (this.#read === 'open' || this.#write === 'open') return;
    if (this.#finishing || this.#channelClosed) return;
    this.#finishing = true;
    this.#host.forget(this);
    const deadline = Date.now() + FINISH_DRAIN_MS;
    const tryClose = () => {
      if (this.#channelClosed) return;
      if (this.#dc.bufferedAmount > 0 && Date.now() < deadline && this.#host.connError() === null) {
        setTimeout(tryClose, 10);
        return;
      }
      this.#dc.close();
    };
    tryClose();
  }

  #onChannelClose(): void {
    if (this.#channelClosed) return;
    this.#channelClosed = true;
    this.#host.forget(this);
    if (this.#onFirstMessage !== null) {
      const f = this.#onFirstMessage;
      this.#onFirstMessage = null;
      f();
    }
    this.#wakeWriters();
    if (this.#read !== 'open' && this.#write !== 'open') return;
    if (this.#settleClose()) return;
    // Every channel closes when the association goes down, and the
    // browser may report this one before the connection itself: give the
    // connection a moment to say so before reading this as a plain close.
    setTimeout(() => this.#settleClose(true), CLOSE_SETTLE_MS);
  }

  /**
   * Settles the halves still open after the channel closed: with the
   * connection's error if it is gone, otherwise (when final) a close
   * without FIN reads as EOF and writes fail. Returns whether it settled.
   */
  #settleClose(final = false): boolean {
    const cerr =
      this.#host.connError() ??
      (this.#host.transportGone() ? new KpsError('closed', 'kps: the connection was closed', { remote: true }) : null);
    if (cerr !== null) {
      this.fail(cerr);
      return true;
    }
    if (!final) return false;
    if (this.#read === 'open') {
      this.#read = 'eof';
      this.#readCtl.close();
    }
    if (this.#write === 'open') {
      this.#write = 'failed';
      this.#writeErr = new KpsError('closed', 'kps: the stream was closed by the peer', { remote: true });
      this.#writeCtl.error(this.#writeErr);
    }
    return true;
  }

  /** @internal The connection ended: both open halves fail with err. */
  fail(err: KpsError): void {
    if (this.#read === 'open') {
      this.#read = 'failed';
      this.#readCtl.error(err);
    }
    if (this.#write === 'open') {
      this.#write = 'failed';
      this.#writeErr = err;
      this.#writeCtl.error(err);
    }
    this.#wakeWriters();
  }
}
