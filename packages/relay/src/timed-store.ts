/**
 * The message store as the group committer sees it: every append runs under the relay's quota,
 * and its transaction latency and the envelopes it stored are counted in the relay's metrics.
 */
import type { RelayMetrics } from './metrics.ts';
import type { Quota } from './quota.ts';
import type { MessageStore } from './message-store.ts';

export function timedStore(
  store: MessageStore,
  quota: Quota,
  metrics: Pick<RelayMetrics, 'commit' | 'messages'>,
): MessageStore {
  return {
    appendBatch: async (envelopes) => {
      const t0 = performance.now();
      const results = await store.appendBatch(envelopes, quota);
      metrics.commit.observe((performance.now() - t0) / 1000);
      metrics.messages += results.filter((r) => r.ok && !r.duplicate).length;
      return results;
    },
    head: (contactId) => store.head(contactId),
    history: (contactId, since, limit) => store.history(contactId, since, limit),
    get stats() {
      return store.stats;
    },
    ...(store.commitsOnCall === true ? { commitsOnCall: true } : {}),
    close: () => store.close(),
  };
}
