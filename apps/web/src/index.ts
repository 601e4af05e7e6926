/** @latchkey/web: the web server of the visitor widget and agent console. */
export { startWeb, type WebOptions, type RunningWeb } from './server.ts';
export {
  DemoBackend,
  DEMO_AGENT_ID,
  type DemoBackendOptions,
  type DemoContact,
} from './demo-backend.ts';
export { buildWeb, ensureBuilt, isFresh, DEFAULT_DIST } from './build.ts';
