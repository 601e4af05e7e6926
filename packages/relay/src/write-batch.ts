/**
 * Coalesces the frames a connection gets within one event-loop turn into one socket write. A
 * group commit acks and delivers hundreds of messages in one turn; without this, every frame
 * is a `writev` system call of its own (ws writes header and payload with cork/uncork per
 * frame). The first frame of a turn corks the connection's TCP (or TLS) socket; once the turn's
 * callbacks and microtasks have run, every corked socket is uncorked, so each sends its frames
 * in one write. Frames keep their order; nothing waits longer than the turn that produced it.
 */

/** The part of a net.Socket (or tls.TLSSocket) the batch uses. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

export class WriteBatch {
  #held = new Set<Corkable>();

  /** Corks `socket` until the end of this turn (once per turn, however many frames follow). */
  hold(socket: Corkable): void {
    if (this.#held.has(socket)) return;
    socket.cork();
    this.#held.add(socket);
    if (this.#held.size === 1) process.nextTick(() => this.flush());
  }

  /** Uncorks every socket held this turn: their frames go out, one write each. */
  flush(): void {
    const held = this.#held;
    this.#held = new Set();
    for (const s of held) {
      try {
        s.uncork();
      } catch {
        // a socket destroyed meanwhile has nothing left to write
      }
    }
  }
}
