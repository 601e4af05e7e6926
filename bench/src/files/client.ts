/**
 * Child process for the files benchmark: a visitor's @latchkey/client sends one file from disk
 * (`sendFile` reads it by offset through a file handle, encrypts chunk by chunk and uploads),
 * then an agent's client reads it back (`openFile`: capability link, streamed ciphertext,
 * verified chunk by chunk, SHA-256 checked) into a sink. Reports the times and this process's
 * memory: peak RSS (`maxRSS`) and the largest ArrayBuffer total sampled every 20 ms, to show a
 * file never sits whole in memory.
 */
import { open } from 'node:fs/promises';
import { WebSocket } from 'ws';
import { LatchkeyClient, type WebSocketConstructor } from '@latchkey/client';
import { mintToken } from '@latchkey/tokens';
import { childConfig, serve } from '../ipc.ts';

interface Config {
  secretHex: string;
  relayUrl: string;
  keysUrl: string;
}

const config = childConfig<Config>();
const secret = new Uint8Array(Buffer.from(config.secretHex, 'hex'));
let run = 0;

async function client(contactId: string, participantId: string, role: 'visitor' | 'agent') {
  return LatchkeyClient.connect({
    relayUrl: config.relayUrl,
    keysUrl: config.keysUrl,
    token: await mintToken(secret, { contactId, participantId, role, ttlSeconds: 3600 }),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    reconnect: false,
  });
}

async function roundTrip(p: { path: string }): Promise<unknown> {
  const contact = `files-${process.pid}-${++run}`;
  const visitor = await client(contact, 'v', 'visitor');
  const agent = await client(contact, 'a', 'agent');
  const fh = await open(p.path, 'r');
  const size = (await fh.stat()).size;
  let peakArrayBuffers = 0;
  const sampler = setInterval(() => {
    peakArrayBuffers = Math.max(peakArrayBuffers, process.memoryUsage().arrayBuffers);
  }, 20);
  try {
    const seen = new Promise<void>((resolve) => agent.on('message', (m) => m.file && resolve()));
    const t0 = performance.now();
    const sent = await visitor.sendFile({
      name: 'bench.bin',
      type: 'application/octet-stream',
      size,
      read: async (offset, length) => {
        const buf = new Uint8Array(length);
        const { bytesRead } = await fh.read(buf, 0, length, offset);
        return bytesRead === length ? buf : buf.subarray(0, bytesRead);
      },
    });
    const uploadMs = performance.now() - t0;
    await seen;
    const t1 = performance.now();
    let read = 0;
    const reader = agent.openFile(sent.seq).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      read += value.length;
    }
    const downloadMs = performance.now() - t1;
    if (read !== size) throw new Error(`read ${read} of ${size} bytes`);
    return {
      size,
      uploadMs,
      downloadMs,
      peakArrayBuffers,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  } finally {
    clearInterval(sampler);
    await fh.close();
    visitor.close();
    agent.close();
  }
}

serve({ ready: true }, { roundTrip });
