/**
 * Type-checked in the empty project of tests/integration/npm-pack.test.ts against the installed
 * packages' declarations (dist/*.d.ts), and in the workspace against the source: both must give
 * the same types. The `@ts-expect-error` lines fail the check if a declaration resolved to `any`.
 */
import { LatchkeyClient, type ChatMessage, type ClientOptions } from '@latchkey/client';
import { toBase64Url } from '@latchkey/crypto/codec';
import { LatchkeyError, type Role } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';

export async function chat(opts: ClientOptions, secret: Uint8Array): Promise<string> {
  const role: Role = 'visitor';
  const token: string = await mintToken(secret, {
    contactId: 'c',
    participantId: 'p',
    role,
    ttlSeconds: 60,
  });
  const client = await LatchkeyClient.connect({ ...opts, token });
  client.on('message', (m: ChatMessage) => m.text.length);
  const sent = await client.send('hi');
  // @ts-expect-error a message id is a string (fails if SendResult resolved to any)
  const wrong: number = sent.msgId;
  // @ts-expect-error not a role (fails if Role resolved to any)
  const notRole: Role = 'janitor';
  if (LatchkeyError.is(new Error('x'), 'AUTH_INVALID')) return `${wrong}${notRole}`;
  return toBase64Url(new Uint8Array([sent.seq]));
}
