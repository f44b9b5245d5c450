// Pacing of stream opens. The Go listener's SCTP stack (pion) queues at
// most 16 new streams waiting for acceptance and drops the first packet of
// any further one; the sender then waits for its retransmission timer
// (1-3 s) before the stream appears. The Go dialer waits for each
// DATA_CHANNEL_ACK, which browsers do not expose, so here a slot is
// released by the best evidence the peer has taken the stream: the first
// message it sends on it, the channel closing, or, failing both, a short
// delay (a listener drains its accept queue in microseconds; the delay
// only has to outlast one burst).

/** Stream opens allowed in flight at once, as on the Go side. */
export const MAX_OPENING = 8;

/**
 * Fallback release delay. The listener must run its accept loop once per
 * two such windows for no open to be dropped (8 per window, 16 queued at
 * most), which a Go runtime does even under load; streams the peer never
 * answers still open at about 8 per 10 ms.
 */
export const OPEN_RELEASE_MS = 10;

/** A counting gate for stream opens (FIFO). */
export class OpenGate {
  #inFlight = 0;
  readonly #waiters: Array<() => void> = [];
  readonly #max: number;

  constructor(max = MAX_OPENING) {
    this.#max = max;
  }

  /**
   * Waits for a slot and returns its release function (idempotent, so
   * every signal that the peer took the stream may call it).
   */
  async acquire(): Promise<() => void> {
    if (this.#inFlight >= this.#max || this.#waiters.length > 0) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    } else {
      this.#inFlight++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next !== undefined) {
        next(); // the slot passes straight to the next waiter
      } else {
        this.#inFlight--;
      }
    };
  }

  /** Wakes every waiter (the connection closed); their opens then fail. */
  drain(): void {
    for (const w of this.#waiters.splice(0)) {
      this.#inFlight++;
      w();
    }
  }
}
