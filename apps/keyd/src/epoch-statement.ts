/**
 * Epoch statements (DESIGN.md "Trust and tokens"; docs/protocol.md "Epoch statement"): the key
 * service signs, with its certificate key and the context 'latchkey.v1.epoch-statement', the
 * contact's current epoch, when recent epochs began, who the members are and who left when.
 * Clients take membership and epochs only from these. Only ids, roles, epochs and times.
 */
import { toBase64Url, utf8Encode } from '@latchkey/crypto/codec';
import { signWithContext } from '@latchkey/crypto/sign';
import {
  STATEMENT_ALG,
  STATEMENT_CONTEXT,
  STATEMENT_MAX_EPOCHS,
  STATEMENT_MAX_MEMBERS,
  type ContactInfo,
  type EpochStatement,
  type EpochStatementBody,
} from '@latchkey/protocol';

/**
 * Signs the statement of `contactId` at `epoch`.
 * @param args.contact - The membership table's view of the contact (null: nobody recorded yet).
 * @param args.epochs - Known start times of epochs (any order); only those up to `epoch` are kept.
 * @throws RangeError when the service secret key is not 32 bytes.
 */
export function issueStatement(args: {
  serviceSecretKey: Uint8Array;
  contactId: string;
  epoch: number;
  contact: ContactInfo | null;
  epochs: readonly { epoch: number; since: number }[];
  now: number;
}): EpochStatement {
  const participants = args.contact?.participants ?? [];
  const members: EpochStatementBody['members'] = [];
  const removed: EpochStatementBody['removed'] = [];
  for (const p of participants) {
    if (p.state === 'active' && p.role !== null)
      members.push({ participantId: p.participantId, role: p.role });
    else if (p.state !== 'active')
      removed.push({ participantId: p.participantId, at: p.leftAt ?? p.joinedAt });
  }
  // The newest removals matter most: keep those when a contact had more than the schema allows.
  removed.sort((a, b) => a.at - b.at);
  const epochs = args.epochs
    .filter((e) => e.epoch <= args.epoch)
    .sort((a, b) => a.epoch - b.epoch)
    .slice(-STATEMENT_MAX_EPOCHS);
  const body: EpochStatementBody = {
    v: 1,
    alg: STATEMENT_ALG,
    contactId: args.contactId,
    epoch: args.epoch,
    epochs,
    members: members.slice(0, STATEMENT_MAX_MEMBERS),
    removed: removed.slice(-STATEMENT_MAX_MEMBERS),
    issuedAt: args.now,
  };
  const bytes = utf8Encode(JSON.stringify(body));
  return {
    body: toBase64Url(bytes),
    sig: toBase64Url(signWithContext(args.serviceSecretKey, STATEMENT_CONTEXT, bytes)),
  };
}
