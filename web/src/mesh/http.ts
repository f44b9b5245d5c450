// HTTP plumbing shared by every node call: base URL handling, bounded
// requests, and turning a node's answer into JSON or a NodeError.

import { NodeError } from './errors.js';

/** Bound of one request when the caller gives none. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * Checks a node URL and returns it with a trailing slash, so endpoints
 * resolve under it even when a node is served below a path prefix
 * (https://example.org/keyhole/).
 */
export function nodeBase(url: string): string {
  if (typeof url !== 'string') throw new TypeError('a node URL must be a string such as http://127.0.0.1:8080');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`not a node URL: ${JSON.stringify(url)} (want http://host:port or https://host/path)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TypeError(`a node URL must be http: or https:, got ${JSON.stringify(url)}`);
  }
  if (u.search !== '' || u.hash !== '' || u.username !== '' || u.password !== '') {
    throw new TypeError(`a node URL takes no query, fragment or credentials: ${JSON.stringify(url)}`);
  }
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u.href;
}

/** Checks a timeoutMs option. */
export function checkTimeout(ms: unknown, fallback: number, what = 'timeoutMs'): number {
  const v = ms ?? fallback;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
    throw new TypeError(`${what} must be a positive number of milliseconds`);
  }
  return v;
}

/** Checks a signal option. */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  return signal;
}

/**
 * A signal that fires when the caller's does or after ms, and a way to
 * tell which happened; done() must be called to drop the timer.
 */
export function deadline(signal: AbortSignal | undefined, ms: number): { signal: AbortSignal; timedOut: () => boolean; done: () => void } {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError'));
  }, ms);
  const onAbort = () => ac.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: ac.signal,
    timedOut: () => timedOut,
    done: () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** What a node answered: status and parsed JSON body (null if none or not JSON). */
export interface JsonAnswer {
  status: number;
  body: unknown;
}

/**
 * One request to a node asking for JSON, bounded by timeoutMs and the
 * caller's signal. Resolves with any HTTP answer; rejects with NodeError
 * 'timeout' or 'unreachable', or with the caller's abort reason.
 */
export async function requestJson(
  node: string,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: Uint8Array },
  opts: { signal?: AbortSignal | undefined; timeoutMs: number },
): Promise<JsonAnswer> {
  if (opts.signal?.aborted) throw opts.signal.reason;
  const d = deadline(opts.signal, opts.timeoutMs);
  try {
    const req: RequestInit = {
      method: init.method ?? 'GET',
      headers: { Accept: 'application/json', ...init.headers },
      signal: d.signal,
      cache: 'no-store',
      credentials: 'omit',
    };
    if (init.body !== undefined) req.body = init.body as BufferSource;
    const res = await fetch(url, req);
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text === '' ? null : JSON.parse(text);
    } catch {
      body = null;
      if (!res.ok) body = { error: text.trim().split('\n', 1)[0] ?? '' };
    }
    return { status: res.status, body };
  } catch (e) {
    if (d.timedOut()) throw new NodeError('timeout', node, `no answer from ${url} within ${opts.timeoutMs} ms`, { cause: e });
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw new NodeError('unreachable', node, `${url} did not answer (${errorText(e)}); is the node up and does it allow this origin?`, {
      cause: e,
    });
  } finally {
    d.done();
  }
}

/** The node's error line from an error body, or ''. */
export function errorLine(body: unknown): string {
  if (typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string') {
    return (body as { error: string }).error;
  }
  return '';
}

/** A NodeError 'refused' for an answer with an unexpected status. */
export function refused(node: string, what: string, a: JsonAnswer): NodeError {
  const line = errorLine(a.body);
  return new NodeError('refused', node, `${what}: ${a.status}${line === '' ? '' : ' ' + line}`, { status: a.status, detail: line });
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
