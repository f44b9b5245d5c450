// A KPS connection over WebRTC: the peer connection, its two reserved
// channels, and the streams on every other channel.

import { fromUtf8, utf8 } from './bytes.js';
import { Datagrams } from './datagrams.js';
import { KpsError, codeName, toWireCode, type KpsErrorCode } from './errors.js';
import { OPEN_RELEASE_MS, OpenGate } from './pacing.js';
import { Stream, type StreamHost } from './stream.js';

/**
 * keyhole's connection-close frame on channel 0: 0x10 | u32 BE code |
 * UTF-8 reason. KPS has no connection-level close on WebRTC; keyhole
 * peers use this so a close code and reason (e.g. an auth refusal)
 * reach the other side.
 */
export const CONTROL_CLOSE = 0x10;
/** Longest close reason sent, in bytes (as on the Go side). */
export const MAX_REASON = 512;
/** Incoming streams waiting for acceptStream; beyond it they are refused with queue-full. */
export const MAX_INCOMING_STREAMS = 4096;
/** How long close() waits for the close frame to leave before tearing down. */
const CLOSE_DRAIN_MS = 250;

/** Why and by whom a connection ended; what `Connection.closed` resolves to. */
export interface CloseInfo {
  /** SPEC 9.1 name of the close code ('none' for 0). */
  readonly code: KpsErrorCode;
  /** The close code as a number. */
  readonly wireCode: number;
  /** The reason text the closing side gave ('' if none). */
  readonly reason: string;
  /** True when the peer (or the network) ended it, false for close(). */
  readonly remote: boolean;
}

/** @internal What dial needs to finish setting up a connection. */
export interface ConnectionInternals {
  /** The handshake is done: from now on transport failures close the connection. */
  markEstablished(): void;
  markKeyhole(peerKey: Uint8Array): void;
  transportGone(): boolean;
  /** Tears down without a close frame (dial failed). */
  abandon(err: KpsError): void;
}

const internals = new WeakMap<Connection, ConnectionInternals>();

/** @internal Dial's handle on a connection's setup hooks. */
export function connectionInternals(c: Connection): ConnectionInternals {
  return internals.get(c)!;
}

/** Truncates a reason to MAX_REASON bytes on a character boundary. */
function reasonBytes(reason: string): Uint8Array {
  const b = utf8(reason);
  if (b.length <= MAX_REASON) return b;
  let n = MAX_REASON;
  while (n > 0 && (b[n]! & 0xc0) === 0x80) n--; // do not split a UTF-8 sequence
  return b.subarray(0, n);
}

/**
 * One connection to a pinned listener. Streams and datagrams are
 * independent; `closed` resolves (never rejects) when it ends, from
 * either side, and every open stream then fails with that reason.
 */
export class Connection {
  /** Unreliable datagrams over this connection (SPEC 7). */
  readonly datagrams: Datagrams;
  /** Resolves once the connection has ended, with the code and reason. */
  readonly closed: Promise<CloseInfo>;

  readonly #pc: RTCPeerConnection;
  readonly #control: RTCDataChannel;
  readonly #streams = new Set<Stream>();
  readonly #gate = new OpenGate();
  readonly #host: StreamHost;
  #accepted: Stream[] = [];
  #acceptWaiters: Array<{ resolve: (s: Stream) => void; reject: (e: unknown) => void }> = [];
  #label = 0;
  #keyhole = false;
  #established = false;
  #peerKey: Uint8Array | null = null;
  #closeErr: KpsError | null = null;
  #resolveClosed!: (info: CloseInfo) => void;

  /** @internal dial() creates connections. */
  constructor(pc: RTCPeerConnection, control: RTCDataChannel, dgram: RTCDataChannel) {
    this.#pc = pc;
    this.#control = control;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    this.#host = {
      connError: () => this.#closeErr,
      transportGone: () => this.#transportGone(),
      forget: (s) => {
        this.#streams.delete(s);
      },
    };
    this.datagrams = new Datagrams(dgram, { connError: () => this.#closeErr });
    control.binaryType = 'arraybuffer';
    control.addEventListener('message', (ev) => this.#onControl(ev.data));
    // While dialing, dial() reads transport failures itself (to say why).
    control.addEventListener('close', () => {
      if (this.#established) this.#shutdown(toWireCode('none'), '', true);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (!this.#established) return;
      const st = pc.connectionState;
      if (st === 'failed') this.#shutdown(toWireCode('timeout'), 'the peer stopped answering', true);
      else if (st === 'closed') this.#shutdown(toWireCode('none'), '', true);
    });
    // Registered before anything connects: a stream the peer opens the
    // moment it is up must find a handler.
    pc.addEventListener('datachannel', (ev) => this.#onIncoming(ev.channel));
    internals.set(this, {
      markEstablished: () => {
        this.#established = true;
        if (this.#transportGone()) this.#shutdown(toWireCode('none'), '', true);
      },
      markKeyhole: (key) => {
        this.#keyhole = true;
        this.#peerKey = key.slice();
      },
      transportGone: () => this.#transportGone(),
      abandon: (err) => {
        this.#record(err.wireCode, err.message, false);
        this.#pc.close();
      },
    });
  }

  /**
   * The Ed25519 key the listener proved in the keyhole auth exchange, or
   * null for a plain KPS connection (dialed with auth: false).
   */
  get peerKey(): Uint8Array | null {
    return this.#peerKey === null ? null : this.#peerKey.slice();
  }

  /**
   * Opens a stream. The peer's acceptStream sees it at once (the channel
   * open announces it). Opens are paced, at most 8 in flight, so bursts
   * do not overrun the listener's SCTP accept queue.
   */
  async openStream(): Promise<Stream> {
    this.#throwIfClosed();
    const release = await this.#gate.acquire();
    if (this.#closeErr !== null) {
      release();
      throw this.#closeErr;
    }
    let dc: RTCDataChannel;
    try {
      dc = this.#pc.createDataChannel(`kps-${++this.#label}`, { ordered: true });
    } catch (e) {
      release();
      throw this.#closeErr ?? new KpsError('internal-error', `kps: opening a stream failed: ${String(e)}`, { cause: e });
    }
    const s = new Stream(dc, this.#host, release);
    this.#streams.add(s);
    try {
      await new Promise<void>((resolve, reject) => {
        if (dc.readyState === 'open') return resolve();
        const fail = () => reject(this.#closeErr ?? new KpsError('closed', 'kps: the stream closed while opening'));
        dc.addEventListener('open', () => resolve(), { once: true });
        dc.addEventListener('close', fail, { once: true });
        void this.closed.then(fail);
      });
    } catch (e) {
      release();
      this.#streams.delete(s);
      throw e;
    }
    setTimeout(release, OPEN_RELEASE_MS);
    return s;
  }

  /** Waits for the next stream the peer opens; rejects once the connection is closed. */
  acceptStream(): Promise<Stream> {
    const s = this.#accepted.shift();
    if (s !== undefined) return Promise.resolve(s);
    if (this.#closeErr !== null) return Promise.reject(this.#closeErr);
    return new Promise((resolve, reject) => this.#acceptWaiters.push({ resolve, reject }));
  }

  /**
   * Closes the connection. To a keyhole peer (auth succeeded) the code and
   * reason are sent first on channel 0, so its side reports them; a plain
   * KPS peer just sees the connection end. Never rejects for a closed
   * connection; throws TypeError for a code outside uint32 or an unknown name.
   */
  async close(code: number | KpsErrorCode = 0, reason = ''): Promise<void> {
    const wire = toWireCode(code);
    if (typeof reason !== 'string') throw new TypeError('close reason must be a string');
    if (this.#closeErr !== null) return;
    const r = reasonBytes(reason);
    this.#record(wire, fromUtf8(r), false);
    if (this.#keyhole && this.#control.readyState === 'open') {
      const frame = new Uint8Array(5 + r.length);
      frame[0] = CONTROL_CLOSE;
      new DataView(frame.buffer).setUint32(1, wire >>> 0, false);
      frame.set(r, 5);
      try {
        this.#control.send(frame);
        // Give the frame a moment to leave before the association goes.
        const deadline = Date.now() + CLOSE_DRAIN_MS;
        while (this.#control.bufferedAmount > 0 && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 5));
        }
      } catch {
        // the channel is already going; the peer sees the close anyway
      }
    }
    this.#pc.close();
  }

  #throwIfClosed(): void {
    if (this.#closeErr !== null) throw this.#closeErr;
  }

  #transportGone(): boolean {
    const pc = this.#pc;
    return (
      this.#closeErr !== null ||
      this.#control.readyState === 'closing' ||
      this.#control.readyState === 'closed' ||
      pc.connectionState === 'failed' ||
      pc.connectionState === 'closed' ||
      pc.sctp?.state === 'closed'
    );
  }

  #onControl(data: unknown): void {
    if (!(data instanceof ArrayBuffer)) return;
    const b = new Uint8Array(data);
    if (b.length >= 5 && b[0] === CONTROL_CLOSE) {
      const code = new DataView(data).getUint32(1, false);
      this.#shutdown(code, fromUtf8(b.subarray(5, 5 + MAX_REASON)), true);
    }
  }

  #onIncoming(dc: RTCDataChannel): void {
    if (dc.negotiated) return; // reserved channels are never streams
    const s = new Stream(dc, this.#host);
    this.#streams.add(s);
    const deliver = () => {
      if (this.#closeErr !== null) return;
      const w = this.#acceptWaiters.shift();
      if (w !== undefined) {
        w.resolve(s);
      } else if (this.#accepted.length >= MAX_INCOMING_STREAMS) {
        s.resetWrite('queue-full');
        s.cancelRead('queue-full');
      } else {
        this.#accepted.push(s);
      }
    };
    if (dc.readyState === 'open') deliver();
    else dc.addEventListener('open', deliver, { once: true });
  }

  /** The peer or the network ended the connection. */
  #shutdown(code: number, reason: string, remote: boolean): void {
    if (this.#closeErr !== null) return;
    this.#record(code, reason, remote);
    this.#pc.close();
  }

  /** Records why the connection ended (the first reason wins) and fails everything open. */
  #record(code: number, reason: string, remote: boolean): void {
    if (this.#closeErr !== null) return;
    const who = remote ? 'by the peer' : 'locally';
    const name = codeName(code);
    const msg = `kps: connection closed ${who} (${name === 'none' ? 'no reason' : name})` + (reason ? `: ${reason}` : '');
    const err = new KpsError(code, msg, { remote, reason });
    this.#closeErr = err;
    this.#resolveClosed({ code: err.code, wireCode: err.wireCode, reason, remote });
    for (const s of this.#streams) s.fail(err);
    this.#streams.clear();
    this.#accepted = [];
    for (const w of this.#acceptWaiters.splice(0)) w.reject(err);
    this.#gate.drain();
    this.datagrams.end();
  }
}
