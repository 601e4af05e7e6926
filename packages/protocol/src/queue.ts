/**
 * The agent queue's admin API bodies (docs/admin-api.md "Queue"), served by the key service
 * under `/admin/v1/queue` and `/admin/v1/agents`: contacts waiting unassigned, exactly-one-wins
 * claims, agents' availability and capacity, release and transfer. The enterprise's backend
 * (or the demo backend) drives it with the admin key; the browser never does.
 */
import { z } from 'zod';
import { ADMIN_PREFIX } from './admin.ts';
import { Id, TimeMs } from './primitives.ts';

/** Most contacts one agent may hold at once, and the default when the agent never set it. */
export const QUEUE_MAX_CAPACITY = 100;
export const QUEUE_DEFAULT_CAPACITY = 5;
/** Most waiting contacts one GET /admin/v1/queue answers (oldest first). */
export const QUEUE_LIST_LIMIT = 500;

const enc = encodeURIComponent;
export const QUEUE_PATHS = {
  queue: `${ADMIN_PREFIX}/queue`,
  claim: (contactId: string) => `${ADMIN_PREFIX}/queue/${enc(contactId)}/claim`,
  release: (contactId: string) => `${ADMIN_PREFIX}/queue/${enc(contactId)}/release`,
  transfer: (contactId: string) => `${ADMIN_PREFIX}/queue/${enc(contactId)}/transfer`,
  agent: (agentId: string) => `${ADMIN_PREFIX}/agents/${enc(agentId)}`,
  agentContacts: (agentId: string) => `${ADMIN_PREFIX}/agents/${enc(agentId)}/contacts`,
} as const;

export const Availability = z.enum(['available', 'away']);
export type Availability = z.infer<typeof Availability>;

/** A contact in the queue: waiting (`agentId` null) or claimed by an agent. */
export const QueueEntry = z.strictObject({
  contactId: Id,
  createdAt: TimeMs,
  agentId: Id.nullable(),
  claimedAt: TimeMs.nullable(),
});
export type QueueEntry = z.infer<typeof QueueEntry>;

export const AgentState = z.strictObject({
  agentId: Id,
  availability: Availability,
  capacity: z.number().int().min(0).max(QUEUE_MAX_CAPACITY),
  /** Contacts the agent holds now. */
  active: z.number().int().min(0),
});
export type AgentState = z.infer<typeof AgentState>;

/** POST /admin/v1/queue: puts a new contact in the queue (idempotent; a claimed one stays claimed). */
export const EnqueueRequest = z.strictObject({ contactId: Id });
export type EnqueueRequest = z.infer<typeof EnqueueRequest>;

/** POST /admin/v1/queue/{contactId}/claim */
export const ClaimRequest = z.strictObject({ agentId: Id });
export type ClaimRequest = z.infer<typeof ClaimRequest>;

/** POST /admin/v1/queue/{contactId}/release: back to the queue; `agentId` must hold it. */
export const ReleaseRequest = z.strictObject({ agentId: Id });
export type ReleaseRequest = z.infer<typeof ReleaseRequest>;

/** POST /admin/v1/queue/{contactId}/transfer: from its holder to another agent. */
export const QueueTransferRequest = z.strictObject({ toAgentId: Id });
export type QueueTransferRequest = z.infer<typeof QueueTransferRequest>;

/** PUT /admin/v1/agents/{agentId}: either field or both. */
export const SetAgentRequest = z
  .strictObject({
    availability: Availability.optional(),
    capacity: z.number().int().min(0).max(QUEUE_MAX_CAPACITY).optional(),
  })
  .refine((b) => b.availability !== undefined || b.capacity !== undefined, {
    message: 'availability or capacity required',
  });
export type SetAgentRequest = z.infer<typeof SetAgentRequest>;

/** GET /admin/v1/queue: waiting contacts, oldest first. */
export const QueueResponse = z.strictObject({
  waiting: z.array(QueueEntry).max(QUEUE_LIST_LIMIT),
});
export type QueueResponse = z.infer<typeof QueueResponse>;

/** Answer of enqueue, claim, release and transfer; `rotatedEpoch`/`rotationPending` as for kick. */
export const QueueEntryResponse = z.strictObject({
  entry: QueueEntry,
  rotatedEpoch: z.number().int().min(0).optional(),
  rotationPending: z.literal(true).optional(),
});
export type QueueEntryResponse = z.infer<typeof QueueEntryResponse>;

/** Answer of PUT and GET /admin/v1/agents/{agentId}. */
export const AgentResponse = z.strictObject({ agent: AgentState });
export type AgentResponse = z.infer<typeof AgentResponse>;

/** GET /admin/v1/agents/{agentId}/contacts: the agent's contacts, oldest claim first. */
export const AgentContactsResponse = z.strictObject({
  agent: AgentState,
  contacts: z.array(QueueEntry).max(QUEUE_MAX_CAPACITY),
});
export type AgentContactsResponse = z.infer<typeof AgentContactsResponse>;
