// Reading what a node advertises (`GET /`) and choosing among nodes. A
// node prices its work by its load, so a client that asks several nodes
// and goes to the cheapest spreads load across the mesh by itself.

import { NodeError } from './errors.js';
import { DEFAULT_REQUEST_TIMEOUT_MS, checkSignal, checkTimeout, nodeBase, refused, requestJson } from './http.js';
import { MAX_POW_BITS, decodePowToken } from './pow.js';

/** A node's `GET /` answer (node/PROTOCOL.md), checked, plus where and when it was read. */
export interface NodeInfo {
  /** The node's Ed25519 key, z-base-32. */
  node: string;
  /** The URL the node says it is reachable at. */
  url: string;
  /** A fresh proof-of-work challenge. */
  token: string;
  /** Seconds the token stays valid after it was issued. */
  token_ttl: number;
  /** Bits of work this client must do now (its recent posts included). */
  difficulty: number;
  /** The load-only price everyone sees. */
  base_difficulty: number;
  /** max(cpu, mem), 0..1. */
  load: number;
  /** The node process's CPU share over its last sample, 0..1. */
  cpu: number;
  /** Its memory use against its budget, 0..1. */
  mem: number;
  /** Room posts this client made in the last minute, as the node counts them. */
  posts: number;
  /** STUN URIs of the node's STUN/TURN server. */
  stun: string[];
  /** TURN URIs; credentials come from turnCredentials(). */
  turn: string[];
  /** WebSocket URL of its rendezvous board, '' when it serves none. */
  board: string;
  /** Base URL of its Pkarr relay, '' when it serves none. */
  pkarr: string;
  /** Its software version, for logs. */
  version: string;
  /**
   * The base URL this answer was fetched from (normalised, with a trailing
   * slash). Use it rather than `url` to talk to the node: it is the one
   * known to work from here.
   */
  fetchedFrom: string;
  /** Date.now() when the answer arrived; the token's validity counts from about then. */
  fetchedAt: number;
}

/** Options of nodeInfo(). */
export interface NodeInfoOptions {
  signal?: AbortSignal;
  /** Bound of the request (default 10000 ms). */
  timeoutMs?: number;
}

const Z32 = /^[ybndrfg8ejkmcpqxot1uwisza345h769]{52}$/;

/**
 * Checks a `GET /` answer field by field, so that a wrong or hostile node
 * fails here with a message naming the field instead of deep inside a
 * later call. Fields a client acts on are required; the rest default.
 */
export function parseNodeInfo(node: string, body: unknown, fetchedFrom: string, fetchedAt: number): NodeInfo {
  const bad = (what: string) => new NodeError('malformed', node, `GET / answered ${what}; is this a keyhole node?`);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('something other than a JSON object');
  const o = body as Record<string, unknown>;
  const str = (k: string, required: boolean): string => {
    const v = o[k];
    if (v === undefined && !required) return '';
    if (typeof v !== 'string') throw bad(`no string "${k}"`);
    return v;
  };
  const num = (k: string, required: boolean, min: number, max: number, integer = false): number => {
    const v = o[k];
    if (v === undefined && !required) return 0;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw bad(`"${k}": ${JSON.stringify(v)} (want ${integer ? 'an integer' : 'a number'} in ${min}..${max})`);
    }
    return v;
  };
  const list = (k: string): string[] => {
    const v = o[k];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(`"${k}" that is not a list of strings`);
    return v.slice();
  };
  const key = str('node', true);
  if (!Z32.test(key)) throw bad(`"node": ${JSON.stringify(key)} (want a 52-character z-base-32 key)`);
  const token = str('token', true);
  try {
    decodePowToken(token);
  } catch {
    throw bad(`"token": ${JSON.stringify(token)} (want 32 base64url characters)`);
  }
  const ttl = o.token_ttl === undefined ? 120 : num('token_ttl', true, 1, 86_400);
  return {
    node: key,
    url: str('url', false),
    token,
    token_ttl: ttl,
    difficulty: num('difficulty', true, 0, MAX_POW_BITS, true),
    base_difficulty: num('base_difficulty', false, 0, MAX_POW_BITS, true),
    load: num('load', true, 0, 1),
    cpu: num('cpu', false, 0, 1),
    mem: num('mem', false, 0, 1),
    posts: num('posts', false, 0, Number.MAX_SAFE_INTEGER, true),
    stun: list('stun'),
    turn: list('turn'),
    board: str('board', false),
    pkarr: str('pkarr', false),
    version: str('version', false),
    fetchedFrom,
    fetchedAt,
  };
}

/**
 * Reads a node's advertisement: its key, current price in work, load,
 * a fresh challenge and its STUN/TURN URIs. Rejects with NodeError
 * ('timeout', 'unreachable', 'refused' or 'malformed') or the signal's
 * reason, and with TypeError for a malformed URL.
 */
export async function nodeInfo(url: string, opts: NodeInfoOptions = {}): Promise<NodeInfo> {
  const base = nodeBase(url);
  const signal = checkSignal(opts.signal);
  const timeoutMs = checkTimeout(opts.timeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  const a = await requestJson(url, base, {}, { signal, timeoutMs });
  if (a.status !== 200) throw refused(url, 'GET /', a);
  return parseNodeInfo(url, a.body, base, Date.now());
}

/** Options of pickNodes(). */
export interface PickNodesOptions {
  /** Bound of the whole pick: nodes that have not answered by then are dropped (default 5000 ms). */
  timeoutMs?: number;
  /** How many nodes to return at most (default all that answered). */
  count?: number;
  signal?: AbortSignal;
}

/**
 * Orders nodes by what they cost right now: fewest bits of work first,
 * then least loaded; equal ones keep the caller's order, so a caller's
 * own preference (say, a cached favourite first) breaks ties.
 */
export function compareNodes(a: NodeInfo, b: NodeInfo): number {
  return a.difficulty - b.difficulty || a.load - b.load;
}

/**
 * Asks every node what it charges, in parallel and bounded in time, and
 * returns the ones that answered, cheapest first (see compareNodes).
 * This is how a client spreads itself over the mesh: busy nodes price
 * themselves out. Unreachable or malformed nodes are dropped; when none
 * answers it rejects with a NodeError listing why.
 */
export async function pickNodes(urls: readonly string[], opts: PickNodesOptions = {}): Promise<NodeInfo[]> {
  if (!Array.isArray(urls)) throw new TypeError('pickNodes takes an array of node URLs');
  const timeoutMs = checkTimeout(opts.timeoutMs, 5000);
  const signal = checkSignal(opts.signal);
  const count = opts.count ?? Infinity;
  if (count !== Infinity && (!Number.isInteger(count) || count < 1)) throw new TypeError('count must be a positive integer');
  const seen = new Set<string>();
  const unique: string[] = [];
  for (const u of urls) {
    const b = nodeBase(u);
    if (!seen.has(b)) {
      seen.add(b);
      unique.push(u);
    }
  }
  if (unique.length === 0) throw new TypeError('pickNodes needs at least one node URL');
  const results = await Promise.allSettled(unique.map((u) => nodeInfo(u, { timeoutMs, ...(signal ? { signal } : {}) })));
  if (signal?.aborted) throw signal.reason;
  const ok: NodeInfo[] = [];
  const why: string[] = [];
  results.forEach((r) => {
    if (r.status === 'fulfilled') ok.push(r.value);
    else why.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
  });
  if (ok.length === 0) {
    throw new NodeError('unreachable', unique.join(', '), `no node answered: ${why.join('; ')}`, { cause: results });
  }
  ok.sort(compareNodes);
  return ok.slice(0, count);
}

/** Options of nodesOf(). */
export interface NodesOfOptions {
  signal?: AbortSignal;
  /** Bound of the request (default 10000 ms). */
  timeoutMs?: number;
}

/**
 * Other nodes a node has seen recently: how a client that knows one node
 * finds the rest of the mesh (and candidates for pickNodes). Entries
 * that are not http(s) URLs are left out rather than trusted.
 */
export async function nodesOf(url: string, opts: NodesOfOptions = {}): Promise<string[]> {
  const base = nodeBase(url);
  const signal = checkSignal(opts.signal);
  const timeoutMs = checkTimeout(opts.timeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  const a = await requestJson(url, new URL('nodes', base).href, {}, { signal, timeoutMs });
  if (a.status !== 200) throw refused(url, 'GET /nodes', a);
  if (!Array.isArray(a.body)) throw new NodeError('malformed', url, 'GET /nodes answered something other than a JSON array');
  const out: string[] = [];
  for (const x of a.body) {
    if (typeof x !== 'string') continue;
    try {
      nodeBase(x);
      out.push(x);
    } catch {
      // a node listed something that is not a node URL: skip it
    }
  }
  return out;
}
