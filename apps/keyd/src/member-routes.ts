/**
 * The member routes of the key service (docs/protocol.md "Key service"): the epoch statement
 * and the content key of the token's contact, and only that contact, sealed to the caller's
 * delivery key (or plain where allowed), with a certificate of the caller's session signing
 * key. Only a current member is served; rotation and the access log are key-policy.ts's.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fromBase64Url, toBase64Url } from '@latchkey/crypto/codec';
import { isValidSigningPublicKey } from '@latchkey/crypto/sign';
import type { AccessTable } from '@latchkey/keys';
import {
  AUDIENCE_KEYS,
  ContactKeyRequest,
  KEYS_PATHS,
  LatchkeyError,
  type ContactKeyResponse,
  type EpochStatement,
  type EpochStatementResponse,
  type Principal,
} from '@latchkey/protocol';
import type { TokenVerifier } from '@latchkey/tokens';
import { admissionBatch } from './access-batch.ts';
import { issueCertificate } from './certificate.ts';
import { issueStatement } from './epoch-statement.ts';
import { sealKey } from './key-delivery.ts';
import type { KeyPolicy } from './key-policy.ts';

/** What the member routes need from the server. */
export interface MemberRoutesContext {
  verifier: TokenVerifier;
  access: AccessTable;
  policy: KeyPolicy;
  /** The member admitted for each request (also read by the rate limits). */
  principals: WeakMap<FastifyRequest, Principal>;
  /** The service's Ed25519 secret key (32-byte seed) that signs certificates and statements. */
  signingKey: Uint8Array;
  certTtlSeconds: number;
  /** Whether a key may be handed out unsealed (no delivery key in the request). */
  plainAllowed: boolean;
}

/** The bearer token of a request. @throws LatchkeyError AUTH_REQUIRED when there is none. */
function bearer(req: FastifyRequest): string {
  const header = req.headers.authorization;
  const m = header === undefined ? null : /^Bearer[ ]+([^\s]+)[ ]*$/i.exec(header);
  if (m === null || m[1] === undefined) {
    throw new LatchkeyError('AUTH_REQUIRED', 'a bearer token is required');
  }
  return m[1];
}

/** Adds the member routes (epoch statement, contact key) to `app`. */
export function registerMemberRoutes(
  app: FastifyInstance,
  {
    verifier,
    access,
    policy,
    principals,
    signingKey,
    certTtlSeconds,
    plainAllowed,
  }: MemberRoutesContext,
): void {
  // Authenticate before the body is read: an anonymous caller cannot make us parse anything.
  // Only a current member gets keys or statements: kicked, departed, over the limit or expired
  // are refused.
  // A first request writes the membership: the admissions of one loop turn commit together.
  const admissions = admissionBatch(access);
  const admitMember = async (req: FastifyRequest): Promise<void> => {
    const principal = await verifier.verify(bearer(req), { audience: AUDIENCE_KEYS });
    try {
      await admissions.submit(principal);
    } catch (err) {
      if (LatchkeyError.is(err) && err.code !== 'KEY_UNAVAILABLE') await policy.refused(principal);
      throw err;
    }
    principals.set(req, principal);
  };

  /** The signed epoch statement of a contact at its current `epoch`. */
  const statementOf = async (contactId: string, epoch: number): Promise<EpochStatement> => {
    const now = Date.now();
    const [contact, epochs] = await Promise.all([
      access.contact(contactId, now),
      policy.epochTimes(contactId),
    ]);
    return issueStatement({
      serviceSecretKey: signingKey,
      contactId,
      epoch,
      contact,
      epochs,
      now,
    });
  };

  app.post(KEYS_PATHS.epochStatement, { onRequest: admitMember }, async (req) => {
    const principal = principals.get(req);
    if (principal === undefined)
      throw new LatchkeyError('AUTH_REQUIRED', 'a bearer token is required');
    const { epoch } = await policy.epochFacts(principal.contactId);
    const body: EpochStatementResponse = {
      statement: await statementOf(principal.contactId, epoch),
    };
    return body;
  });

  app.post(KEYS_PATHS.contactKey, { onRequest: admitMember }, async (req) => {
    const principal = principals.get(req);
    if (principal === undefined)
      throw new LatchkeyError('AUTH_REQUIRED', 'a bearer token is required');
    const parsed = ContactKeyRequest.safeParse(req.body === undefined ? {} : req.body);
    if (!parsed.success) {
      const where = parsed.error.issues[0]?.path.join('.') ?? '';
      throw new LatchkeyError(
        'BAD_REQUEST',
        where === '' ? 'invalid request body' : `invalid request body at ${where}`,
      );
    }
    if (parsed.data.delivery === undefined && !plainAllowed) {
      throw new LatchkeyError('BAD_REQUEST', 'sealed key delivery required: send a delivery key');
    }
    let sessionKey: Uint8Array | undefined;
    if (parsed.data.signingKey !== undefined) {
      try {
        sessionKey = fromBase64Url(parsed.data.signingKey);
      } catch {
        throw new LatchkeyError('BAD_REQUEST', 'invalid request body at signingKey');
      }
      // A small-order or non-canonical key would make a signature valid for any message.
      if (!isValidSigningPublicKey(sessionKey)) {
        throw new LatchkeyError('BAD_REQUEST', 'signingKey is not a valid Ed25519 public key');
      }
    }
    // The contact is the token's, never the body's. Rotation due, access log: key-policy.ts.
    const { key: ck, rotated } = await policy.handOut(principal, parsed.data);
    try {
      const statement = await statementOf(ck.contactId, ck.currentEpoch);
      const body: ContactKeyResponse = {
        contactId: ck.contactId,
        epoch: ck.epoch,
        currentEpoch: ck.currentEpoch,
        ...(rotated ? { rotated } : {}),
        statement,
        ...(policy.rotateAfterMessages === undefined
          ? {}
          : { rotateAfterMessages: policy.rotateAfterMessages }),
        ...(parsed.data.delivery === undefined
          ? { key: toBase64Url(ck.key) }
          : {
              sealedKey: sealKey(
                parsed.data.delivery,
                ck.key,
                ck.contactId,
                ck.epoch,
                principal.participantId,
              ),
            }),
      };
      if (sessionKey !== undefined) {
        body.certificate = issueCertificate({
          serviceSecretKey: signingKey,
          principal,
          publicKey: sessionKey,
          epoch: ck.currentEpoch,
          now: Date.now(),
          ttlMs: certTtlSeconds * 1000,
        });
      }
      return body;
    } finally {
      ck.key.fill(0);
    }
  });
}
