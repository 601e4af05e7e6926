// A plain Node program of someone outside the monorepo (tests/integration/npm-pack.test.ts copies
// it into an empty project that installed the packed SDK): mints two participant tokens with the
// API secret, connects a visitor and an agent to a running `latchkey start`, sends one message
// each way, reads the history, and prints what it saw as one JSON line.
import { WebSocket } from 'ws';
import { LatchkeyClient } from '@latchkey/client';
import { fromBase64Url } from '@latchkey/crypto/codec';
import { PROTOCOL_VERSION } from '@latchkey/protocol';
import { mintToken } from '@latchkey/tokens';

const { LATCHKEY_API_SECRET, LATCHKEY_RELAY_URL, LATCHKEY_KEYS_URL } = process.env;
if (!LATCHKEY_API_SECRET || !LATCHKEY_RELAY_URL || !LATCHKEY_KEYS_URL) {
  throw new Error('set LATCHKEY_API_SECRET, LATCHKEY_RELAY_URL and LATCHKEY_KEYS_URL');
}
const secret = fromBase64Url(LATCHKEY_API_SECRET);
const contactId = `npm-${Date.now()}`;

async function join(participantId, role) {
  const token = await mintToken(secret, { contactId, participantId, role, ttlSeconds: 600 });
  return LatchkeyClient.connect({
    relayUrl: LATCHKEY_RELAY_URL,
    keysUrl: LATCHKEY_KEYS_URL,
    token,
    WebSocket,
  });
}

/** The first message from someone else that `client` receives. */
function nextFromOthers(client) {
  return new Promise((resolve) => {
    const off = client.on('message', (m) => {
      if (m.own) return;
      off();
      resolve(m);
    });
  });
}

const visitor = await join('v1', 'visitor');
const agent = await join('a1', 'agent');
try {
  const atAgent = nextFromOthers(agent);
  const sent = await visitor.send('hello from an npm install');
  const received = await atAgent;
  const atVisitor = nextFromOthers(visitor);
  await agent.send('hello back');
  const answer = await atVisitor;
  const history = await agent.history();
  console.log(
    JSON.stringify({
      protocol: PROTOCOL_VERSION,
      seq: sent.seq,
      received: { text: received.text, senderId: received.senderId, role: received.senderRole },
      answer: { text: answer.text, senderId: answer.senderId },
      sameKey: visitor.fingerprint() === agent.fingerprint(),
      history: history.map((h) => (h.ok ? [h.seq, h.senderId, h.text] : [h.seq, h.code])),
    }),
  );
} finally {
  visitor.close();
  agent.close();
}
