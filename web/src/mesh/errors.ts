// The one error class the community-node client rejects with when a node
// answers badly or not at all, so an application can tell "this node
// refused me, try another" from a bug in its own arguments (TypeError).

/** What went wrong with a node, without parsing messages. */
export type NodeErrorCode =
  /** The node answered with an error status; status and detail say which. */
  | 'refused'
  /** No answer within the time allowed. */
  | 'timeout'
  /** The request never got an HTTP answer (connection refused, DNS, CORS). */
  | 'unreachable'
  /** The answer is not what node/PROTOCOL.md promises. */
  | 'malformed'
  /** The node asks more proof of work than the caller agreed to pay. */
  | 'too-expensive';

/**
 * A failure caused by a node or the path to it. `detail` is the node's own
 * one-line error (PROTOCOL.md: `{"error": "..."}`), which says what to do
 * next; it is kept apart from the message so it can be shown verbatim.
 */
export class NodeError extends Error {
  /** Stable reason to branch on. */
  readonly code: NodeErrorCode;
  /** The node's base URL as the caller gave it. */
  readonly node: string;
  /** HTTP status, or 0 when there was no HTTP answer. */
  readonly status: number;
  /** The node's error line ('' when it gave none). */
  readonly detail: string;

  constructor(code: NodeErrorCode, node: string, message: string, opts: { status?: number; detail?: string; cause?: unknown } = {}) {
    super(`keyhole node ${node}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'NodeError';
    this.code = code;
    this.node = node;
    this.status = opts.status ?? 0;
    this.detail = opts.detail ?? '';
  }
}
