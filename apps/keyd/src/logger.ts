/**
 * The key service's Fastify logger options (server.ts): whatever the caller asks, tokens,
 * cookies, bodies and keys are redacted and a request is logged as method, path and status.
 */

/** Logger options with our redaction and serializers forced on top of the caller's. */
export function loggerOptions(
  logger: boolean | Record<string, unknown> | undefined,
): false | Record<string, unknown> {
  if (logger === undefined || logger === false) return false;
  const base = logger === true ? {} : logger;
  return {
    ...base,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.body',
        'res.body',
        'body',
        'token',
        'key',
      ],
      censor: '[redacted]',
    },
    serializers: {
      // Path only: no headers (the token), no query string, no body.
      req: (req: { method?: string; url?: string }) => ({
        method: req.method,
        path: (req.url ?? '').split('?')[0],
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
    },
  };
}
