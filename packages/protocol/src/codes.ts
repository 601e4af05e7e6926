/**
 * Stable error codes. Each code maps once to its HTTP status and to the WebSocket close code
 * used when the error ends a connection (null: the connection stays open). Codes never change
 * meaning; new ones are only added. Documented in docs/errors.md.
 */
export const ERROR_CODES = {
  AUTH_REQUIRED: { http: 401, ws: 4401, closes: true },
  AUTH_INVALID: { http: 401, ws: 4401, closes: true },
  AUTH_EXPIRED: { http: 401, ws: 4401, closes: true },
  AUTH_TIMEOUT: { http: 408, ws: 4408, closes: true },
  FORBIDDEN: { http: 403, ws: 4403, closes: false },
  NOT_FOUND: { http: 404, ws: 4404, closes: false },
  BAD_FRAME: { http: 400, ws: 4400, closes: false },
  BAD_REQUEST: { http: 400, ws: 4400, closes: false },
  TOO_LARGE: { http: 413, ws: 1009, closes: true },
  RATE_LIMITED: { http: 429, ws: 4429, closes: false },
  CONFLICT: { http: 409, ws: 4409, closes: false },
  UNSUPPORTED_VERSION: { http: 400, ws: 4426, closes: true },
  DECRYPT_FAILED: { http: 422, ws: 4422, closes: false },
  KEY_UNAVAILABLE: { http: 503, ws: 4503, closes: false },
  UNAVAILABLE: { http: 503, ws: 1013, closes: false },
  TIMEOUT: { http: 504, ws: 4504, closes: false },
  INTERNAL: { http: 500, ws: 1011, closes: false },
  /** Client side: the TLS handshake failed (name mismatch, expired or untrusted certificate). */
  TLS_FAILED: { http: 495, ws: 4495, closes: false },
  CONTACT_CLOSED: { http: 423, ws: 4423, closes: false },
  CONTACT_EXPIRED: { http: 410, ws: 4410, closes: true },
  CONTACT_FULL: { http: 409, ws: 4409, closes: true },
  /** A per-contact or per-participant quota (stored bytes, messages) is used up. */
  QUOTA_EXCEEDED: { http: 429, ws: 4430, closes: false },
  /** Client side: a transcript or membership check failed (replay, reorder, gap, stale epoch...). */
  INTEGRITY: { http: 422, ws: 4424, closes: false },
} as const satisfies Record<string, { http: number; ws: number; closes: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export const ERROR_CODE_LIST = Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]];

/** Too many protocol violations on one connection close it with this code. */
export const WS_CLOSE_POLICY = 1008;
/** Normal closure, and the code a stopping server closes with. */
export const WS_CLOSE_NORMAL = 1000;
export const WS_CLOSE_GOING_AWAY = 1001;
