/**
 * Parsing helpers: JSON text to a validated value, failing with a typed LatchkeyError.
 */
import type { z } from 'zod';
import { LatchkeyError } from './errors.ts';

/**
 * Parses JSON text and validates it against `schema`.
 * @throws LatchkeyError BAD_FRAME when the text is not JSON or does not match.
 */
export function parseJson<T extends z.ZodType>(schema: T, text: string): z.infer<T> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new LatchkeyError('BAD_FRAME', 'not valid JSON');
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const first = result.error.issues[0];
    const where = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
    throw new LatchkeyError('BAD_FRAME', `invalid frame${where}`.slice(0, 200), {
      detail: result.error.message,
    });
  }
  return result.data;
}

/**
 * Validates an already parsed value (an HTTP body or query) against `schema`.
 * @throws LatchkeyError BAD_REQUEST naming the first offending path.
 */
export function parseRequest<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const first = result.error.issues[0];
    const where = first && first.path.length > 0 ? ` at ${first.path.join('.')}` : '';
    throw new LatchkeyError('BAD_REQUEST', `invalid request${where}`.slice(0, 200), {
      detail: result.error.message,
    });
  }
  return result.data;
}
