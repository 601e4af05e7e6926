/**
 * The outbox key on a shared (PostgreSQL) outbox: every process that shares the database must
 * seal and open endpoint secrets with the same 32 bytes. The database keeps a check value sealed
 * under the first process's key; a process with another key, or none, is refused at open with
 * this error rather than failing later on every delivery.
 */
import { LatchkeyError } from '@latchkey/protocol';

/** `MISSING`: no key was given; `MISMATCH`: the key is not the one the database was set up with. */
export type OutboxKeyProblem = 'MISSING' | 'MISMATCH';

/** The outbox key is missing or not the shared one (code `UNAVAILABLE`). */
export class WebhookOutboxKeyError extends LatchkeyError {
  readonly problem: OutboxKeyProblem;
  constructor(problem: OutboxKeyProblem, message: string, options?: { cause?: unknown }) {
    super('UNAVAILABLE', message, {
      ...options,
      detail: `webhook outbox key ${problem === 'MISSING' ? 'missing' : 'mismatch'}`,
    });
    this.problem = problem;
  }

  /** Is `err` a WebhookOutboxKeyError (of this problem, when given)? */
  static isKeyError(err: unknown, problem?: OutboxKeyProblem): err is WebhookOutboxKeyError {
    return (
      err instanceof WebhookOutboxKeyError && (problem === undefined || err.problem === problem)
    );
  }
}
