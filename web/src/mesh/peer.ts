// Two browsers that share only a room hash become WebRTC peers: the room
// on a community node (or any node of its mesh) carries their signaling.
//
// Every post is JSON {from, type, ...} with from a random per-call id, so
// each side ignores its own posts and anything addressed to someone else
// (a room is public: junk is skipped, never trusted). Each side says
// hello every second until it has a peer; on first seeing the other, it
// answers with a hello addressed to it, and the side with the smaller id
// offers. Ids are random and distinct, so exactly one side offers and
// there is no glare. ICE candidates trickle as separate posts.

import { utf8 } from '../bytes.js';
import { checkTimeout, deadline, nodeBase } from './http.js';
import type { PaidOptions } from './paid.js';
import { MAX_POST_BYTES, checkRoomHash, post, subscribe, type Subscription } from './room.js';

/** The signaling messages connectViaRoom posts, as JSON. */
export type SignalMessage =
  | { from: string; type: 'hello'; to?: string }
  | { from: string; to: string; type: 'offer' | 'answer'; sdp: string }
  | { from: string; to: string; type: 'candidate'; candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null };

/** Options of connectViaRoom(). */
export interface RoomPeerOptions {
  /** Configuration of the RTCPeerConnection: typically STUN/TURN from turnCredentials(). */
  rtcConfig?: RTCConfiguration;
  /** Abandons the attempt; connectViaRoom then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Bound of the whole attempt, waiting for the peer included (default 60000 ms). */
  timeoutMs?: number;
  /** Label of the data channel (default 'keyhole'). */
  label?: string;
  /** Pause between hellos while no peer has answered (default 1000 ms). */
  helloIntervalMs?: number;
  /** Limits of each post's proof of work (maxBits, timeoutMs); the signal is connectViaRoom's. */
  pow?: Omit<PaidOptions, 'signal' | 'info'>;
  /** Sees every signaling message sent ('out') or accepted ('in') with its size in bytes: for logs and tests. */
  onSignal?: (direction: 'in' | 'out', msg: SignalMessage, bytes: number) => void;
}

/** A connected peer. */
export interface RoomPeer {
  /** The connection; the caller owns it and closes it. */
  pc: RTCPeerConnection;
  /** The data channel, open. */
  channel: RTCDataChannel;
  /** This side's random id in the room. */
  id: string;
  /** The other side's. */
  peerId: string;
}

const ID = /^[0-9a-f]{16}$/;

function randomId(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Parses a room post as a signaling message, or null for anything else. */
export function parseSignal(data: string): SignalMessage | null {
  let m: unknown;
  try {
    m = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof m !== 'object' || m === null) return null;
  const o = m as Record<string, unknown>;
  if (typeof o.from !== 'string' || !ID.test(o.from)) return null;
  if (o.to !== undefined && (typeof o.to !== 'string' || !ID.test(o.to))) return null;
  switch (o.type) {
    case 'hello':
      return o.to === undefined ? { from: o.from, type: 'hello' } : { from: o.from, type: 'hello', to: o.to as string };
    case 'offer':
    case 'answer':
      if (typeof o.to !== 'string' || typeof o.sdp !== 'string') return null;
      return { from: o.from, to: o.to, type: o.type, sdp: o.sdp };
    case 'candidate': {
      if (typeof o.to !== 'string' || typeof o.candidate !== 'string') return null;
      const mid = o.sdpMid;
      const idx = o.sdpMLineIndex;
      if (mid !== undefined && mid !== null && typeof mid !== 'string') return null;
      if (idx !== undefined && idx !== null && (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0)) return null;
      return { from: o.from, to: o.to, type: 'candidate', candidate: o.candidate, sdpMid: mid ?? null, sdpMLineIndex: idx ?? null };
    }
    default:
      return null;
  }
}

/**
 * Connects to whoever else joins the room `hash` through the node at
 * nodeUrl (the other side may use any node of the same mesh) and resolves
 * with an RTCPeerConnection and an open data channel. Meant for two
 * parties per room: the first other id seen is the peer, later ones are
 * ignored. Rejects with a DOMException 'TimeoutError' when no connection
 * is up within timeoutMs, the signal's reason when aborted, RangeError
 * when a description does not fit in a post, and NodeError when the node
 * refuses the posts or the subscription.
 */
export async function connectViaRoom(nodeUrl: string, hash: string, opts: RoomPeerOptions = {}): Promise<RoomPeer> {
  nodeBase(nodeUrl);
  checkRoomHash(hash);
  const timeoutMs = checkTimeout(opts.timeoutMs, 60_000);
  const helloMs = checkTimeout(opts.helloIntervalMs, 1000, 'helloIntervalMs');
  const label = opts.label ?? 'keyhole';
  const d = deadline(opts.signal, timeoutMs);
  return new Attempt(nodeUrl, hash, opts, label, helloMs, timeoutMs, d).run();
}

class Attempt {
  readonly id = randomId();
  peerId: string | null = null;
  readonly pc: RTCPeerConnection;
  channel: RTCDataChannel | null = null;
  sub: Subscription | null = null;
  finished = false;
  offered = false;
  answered = false;
  remoteSet = false;
  helloTimer: ReturnType<typeof setInterval> | null = null;
  helloInFlight = false;
  /** Candidates that arrived before the description they belong to, by sender. */
  readonly early = new Map<string, RTCIceCandidateInit[]>();
  outbox: Promise<void> = Promise.resolve();
  inbox: Promise<void> = Promise.resolve();
  resolve!: (p: RoomPeer) => void;
  reject!: (e: unknown) => void;

  constructor(
    readonly node: string,
    readonly hash: string,
    readonly opts: RoomPeerOptions,
    readonly label: string,
    readonly helloMs: number,
    readonly timeoutMs: number,
    readonly d: ReturnType<typeof deadline>,
  ) {
    this.pc = new RTCPeerConnection(opts.rtcConfig);
  }

  run(): Promise<RoomPeer> {
    const done = new Promise<RoomPeer>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    const onAbort = () => this.fail(this.d.timedOut() ? this.timeoutError() : this.d.signal.reason);
    if (this.d.signal.aborted) onAbort();
    else this.d.signal.addEventListener('abort', onAbort, { once: true });
    this.pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (c === null || c.candidate === '' || this.peerId === null) return;
      this.send({ from: this.id, to: this.peerId, type: 'candidate', candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex });
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'failed') {
        this.fail(new Error(`keyhole room: the WebRTC connection to peer ${this.peerId} failed (no ICE path: try TURN from turnCredentials())`));
      }
    };
    this.pc.ondatachannel = (ev) => this.wire(ev.channel);
    this.start().catch((e) => this.fail(e));
    return done;
  }

  async start(): Promise<void> {
    this.sub = subscribe(this.node, this.hash, (data) => this.receive(data), {
      signal: this.d.signal,
      timeoutMs: this.timeoutMs,
    });
    // Posts are not stored: say hello only once we can hear the answer.
    await this.sub.ready;
    if (this.finished) return;
    this.hello();
    this.helloTimer = setInterval(() => this.hello(), this.helloMs);
  }

  timeoutError(): DOMException {
    const where =
      this.peerId === null
        ? 'no peer appeared in the room'
        : `peer ${this.peerId} answered but the connection did not come up (ICE ${this.pc.iceConnectionState})`;
    return new DOMException(`keyhole room: ${where} within ${this.timeoutMs} ms`, 'TimeoutError');
  }

  hello(): void {
    if (this.finished || this.helloInFlight) return;
    this.helloInFlight = true;
    const msg: SignalMessage = this.peerId === null ? { from: this.id, type: 'hello' } : { from: this.id, type: 'hello', to: this.peerId };
    this.send(msg).finally(() => {
      this.helloInFlight = false;
    });
  }

  stopHello(): void {
    if (this.helloTimer !== null) clearInterval(this.helloTimer);
    this.helloTimer = null;
  }

  /** Queues a post; posts go out one at a time, in order. */
  send(msg: SignalMessage): Promise<void> {
    const text = JSON.stringify(msg);
    const bytes = utf8(text).length;
    if (bytes > MAX_POST_BYTES) {
      this.fail(new RangeError(`keyhole room: the ${msg.type} is ${bytes} bytes as a post, over the node's ${MAX_POST_BYTES}-byte limit`));
      return Promise.resolve();
    }
    const p = this.outbox.then(async () => {
      if (this.finished) return;
      this.opts.onSignal?.('out', msg, bytes);
      await post(this.node, this.hash, text, { ...this.opts.pow, signal: this.d.signal });
    });
    this.outbox = p.catch((e) => this.fail(e));
    return this.outbox;
  }

  receive(data: string): void {
    const m = parseSignal(data);
    if (m === null || m.from === this.id || (m.to !== undefined && m.to !== this.id)) return;
    this.inbox = this.inbox.then(() => this.handle(m, utf8(data).length)).catch((e) => this.fail(e));
  }

  async handle(m: SignalMessage, bytes: number): Promise<void> {
    if (this.finished) return;
    if (m.type === 'candidate' && m.from !== this.peerId) {
      // Posts can overtake each other across the mesh: keep candidates
      // addressed to us until we know who they are from.
      const list = this.early.get(m.from) ?? [];
      if (list.length < 64) list.push({ candidate: m.candidate, sdpMid: m.sdpMid ?? null, sdpMLineIndex: m.sdpMLineIndex ?? null });
      this.early.set(m.from, list);
      return;
    }
    if (this.peerId === null) {
      if (m.type !== 'hello' && m.type !== 'offer') return;
      this.peerId = m.from;
      this.opts.onSignal?.('in', m, bytes);
      if (m.type === 'hello') {
        // It may have said hello before we listened: tell it we are here.
        this.hello();
        if (this.id < this.peerId) await this.offer();
        return;
      }
    } else if (m.from !== this.peerId) {
      return;
    } else {
      this.opts.onSignal?.('in', m, bytes);
    }
    switch (m.type) {
      case 'hello':
        return;
      case 'offer':
        if (this.id < m.from || this.answered) return; // we are the offerer, or a repeat
        this.answered = true;
        this.stopHello();
        await this.pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        await this.remoteDescriptionSet();
        await this.pc.setLocalDescription(await this.pc.createAnswer());
        this.send({ from: this.id, to: m.from, type: 'answer', sdp: this.pc.localDescription!.sdp });
        return;
      case 'answer':
        if (!this.offered || this.remoteSet) return;
        await this.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
        await this.remoteDescriptionSet();
        return;
      case 'candidate':
        if (this.remoteSet) {
          await this.pc.addIceCandidate({ candidate: m.candidate, sdpMid: m.sdpMid ?? null, sdpMLineIndex: m.sdpMLineIndex ?? null });
        } else {
          const list = this.early.get(m.from) ?? [];
          list.push({ candidate: m.candidate, sdpMid: m.sdpMid ?? null, sdpMLineIndex: m.sdpMLineIndex ?? null });
          this.early.set(m.from, list);
        }
        return;
    }
  }

  async offer(): Promise<void> {
    if (this.offered || this.peerId === null) return;
    this.offered = true;
    this.stopHello();
    this.wire(this.pc.createDataChannel(this.label));
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this.send({ from: this.id, to: this.peerId, type: 'offer', sdp: this.pc.localDescription!.sdp });
  }

  async remoteDescriptionSet(): Promise<void> {
    this.remoteSet = true;
    const held = this.peerId === null ? [] : (this.early.get(this.peerId) ?? []);
    this.early.clear();
    for (const c of held) await this.pc.addIceCandidate(c);
  }

  wire(ch: RTCDataChannel): void {
    if (this.channel !== null) return;
    this.channel = ch;
    if (ch.readyState === 'open') this.succeed();
    else ch.addEventListener('open', () => this.succeed(), { once: true });
  }

  succeed(): void {
    if (this.finished || this.channel === null || this.peerId === null) return;
    this.finish();
    this.resolve({ pc: this.pc, channel: this.channel, id: this.id, peerId: this.peerId });
  }

  fail(e: unknown): void {
    if (this.finished) return;
    this.finish();
    this.pc.close();
    this.reject(e);
  }

  finish(): void {
    this.finished = true;
    this.stopHello();
    this.sub?.close();
    this.d.done();
  }
}
