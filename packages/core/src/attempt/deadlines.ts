/**
 * An attempt under a total deadline, as {@link Deadlines} keeps it: the links are the list's own
 * (no node object per attempt).
 */
export interface Deadline {
  /** Epoch milliseconds at which the attempt runs out. */
  deadlineAt: number;
  /** The deadline's length, which picks the list the attempt is in. */
  deadlineMs: number;
  deadlinePrev: Deadline | undefined;
  deadlineNext: Deadline | undefined;
  /** Called once when the deadline runs out first. */
  expire(): void;
}

interface List {
  head: Deadline | undefined;
  tail: Deadline | undefined;
}

/**
 * The total deadlines of the attempts in flight, on one unref'd timer instead of a timer per
 * attempt (making, unref'ing and clearing a Node timer per attempt cost about 0.4 µs, with its
 * garbage). Attempts with the same deadline length run out in the order they started, so each
 * length keeps a FIFO list and only list heads are ever due; the one timer is armed for the
 * earliest head, and an attempt that ends early just unlinks itself.
 *
 * @example
 * ```ts
 * deadlines.add(attempt, 10_000); // attempt.expire() in 10 s unless removed
 * deadlines.remove(attempt);
 * ```
 */
export class Deadlines {
  readonly #lists = new Map<number, List>();
  /** The list last added to: nearly every attempt has the same length. */
  #lastMs = -1;
  #last: List | undefined = undefined;
  #timer: NodeJS.Timeout | undefined = undefined;
  #timerAt = Infinity;
  readonly #onTimer = (): void => this.#fire();

  /** Starts `entry`'s deadline of `ms` milliseconds. */
  add(entry: Deadline, ms: number): void {
    const at = Date.now() + ms;
    entry.deadlineAt = at;
    entry.deadlineMs = ms;
    entry.deadlineNext = undefined;
    let list = ms === this.#lastMs ? this.#last : this.#lists.get(ms);
    if (list === undefined) {
      list = { head: undefined, tail: undefined };
      this.#lists.set(ms, list);
    }
    this.#lastMs = ms;
    this.#last = list;
    const tail = list.tail;
    entry.deadlinePrev = tail;
    if (tail === undefined) list.head = entry;
    else tail.deadlineNext = entry;
    list.tail = entry;
    if (at < this.#timerAt) this.#arm(at);
  }

  /** Ends `entry`'s deadline (the attempt returned); nothing if it already ran out or was removed. */
  remove(entry: Deadline): void {
    const ms = entry.deadlineMs;
    const list = ms === this.#lastMs ? this.#last : this.#lists.get(ms);
    if (list === undefined) return;
    const { deadlinePrev: prev, deadlineNext: next } = entry;
    if (prev === undefined) {
      if (list.head !== entry) return;
      list.head = next;
    } else prev.deadlineNext = next;
    if (next === undefined) list.tail = prev;
    else next.deadlinePrev = prev;
    entry.deadlinePrev = undefined;
    entry.deadlineNext = undefined;
    // The timer stays armed: when it fires it finds the new head, and re-arms for it.
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    const expired: Deadline[] = [];
    let next = Infinity;
    for (const [ms, list] of this.#lists) {
      let head = list.head;
      while (head !== undefined && head.deadlineAt <= now) {
        this.remove(head);
        expired.push(head);
        head = list.head;
      }
      if (head === undefined) {
        this.#lists.delete(ms);
        if (ms === this.#lastMs) this.#last = undefined;
      } else if (head.deadlineAt < next) next = head.deadlineAt;
    }
    if (next !== Infinity) this.#arm(next);
    for (const entry of expired) entry.expire();
  }
}
