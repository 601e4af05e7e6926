/**
 * Internal argument checks shared by every module of @latchkey/crypto.
 *
 * Misuse (a value of the wrong type) throws `TypeError`; a value of the right type but out of range
 * (a key or nonce of the wrong length, a negative epoch) throws `RangeError`. Messages name the
 * argument but never include secret values.
 */

/** @throws {TypeError} if `value` is not a Uint8Array. */
export function assertBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${name} must be a Uint8Array`);
  }
}

/**
 * @throws {TypeError} if `value` is not a Uint8Array.
 * @throws {RangeError} if its length is not `length`.
 */
export function assertBytesLength(
  value: unknown,
  length: number,
  name: string,
): asserts value is Uint8Array {
  assertBytes(value, name);
  if (value.length !== length) {
    throw new RangeError(`${name} must be ${length} bytes, got ${value.length}`);
  }
}

/** @throws {TypeError} if `value` is not a string. */
export function assertString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') {
    throw new TypeError(`${name} must be a string`);
  }
}

/**
 * @throws {TypeError} if `value` is not a number.
 * @throws {RangeError} if it is not an integer in `[min, max]`.
 */
export function assertInteger(
  value: unknown,
  min: number,
  max: number,
  name: string,
): asserts value is number {
  if (typeof value !== 'number') {
    throw new TypeError(`${name} must be a number`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in [${min}, ${max}]`);
  }
}
