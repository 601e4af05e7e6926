/**
 * @latchkey/kms-example: the reference External Key Manager (docs/key-manager-api.yaml), a
 * template for enterprises and the counterpart of the HTTP key-manager adapter in the tests.
 */
export { startKms, type Kms, type KmsOptions } from './kms.ts';
export type { AuditEntry } from './store.ts';
export { main } from './main.ts';
