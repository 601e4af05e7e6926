/**
 * @latchkey/keyd: the key service (DESIGN.md "Trust and tokens") as a library, for the
 * `latchkey` CLI and tests; `main.ts` is the stand-alone process.
 */
export { startKeyService, type KeyService, type KeyServiceOptions } from './server.ts';
export { openKeyService, type OpenKeyServiceOptions } from './open-key-service.ts';
export { keyServicePaths } from './paths.ts';
export { CERT_CONTEXT, issueCertificate } from './certificate.ts';
export { rotateMasterKeyOffline } from './master-key-rotation.ts';
export { completeShredsOffline, SHRED_COMPLETE_EVERY_MS } from './shred-completion.ts';
export { KeyPolicy, type KeyPolicyOptions } from './key-policy.ts';
export { startKeySweep } from './key-sweep.ts';
export {
  AccessLogTailer,
  webhookAccessSink,
  type AccessSink,
  type SinkProgress,
} from './access-stream.ts';
export { SyslogAccessSink, parseSyslogUrl, type SyslogSinkOptions } from './access-syslog.ts';
export {
  openChosenKeyManager,
  kekGenerationsOf,
  type KeyManagerChoice,
} from './key-manager-choice.ts';
export { rewrapServiceSigningKey } from './signing-key.ts';
export {
  ConfigError,
  KEY_SERVICE_OPTIONS,
  decodeApiSecret,
  keyManagerSettings,
  keyServiceSecrets,
  keyServiceSettings,
  parseDurationMs,
  syslogSettings,
  type KeyServiceFlags,
  type KeyServiceSecrets,
  type KeyServiceSettings,
} from './settings.ts';
