/**
 * The KMIP client against a hostile server of our own (node:tls with certificates made here):
 * garbage, lies about lengths, answers to another request, failures with a Result Reason.
 * Every case must end in a typed KEY_UNAVAILABLE, never a crash or a hang.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LatchkeyError } from '@latchkey/protocol';
import { tempDir } from '../_helpers.ts';
import { makeKmipPki } from '../kmip-server.ts';
import { KmipClient, KmipResultError } from '../../src/kmip/client.ts';
import { TAG } from '../../src/kmip/tags.ts';
import { decodeTtlv, encodeTtlv, type TtlvItem } from '../../src/kmip/ttlv.ts';
import { child, ttlv } from '../../src/kmip/ttlv-items.ts';

let hasOpenssl = true;
try {
  execFileSync('openssl', ['version'], { stdio: 'pipe' });
} catch {
  hasOpenssl = false;
}

type Reply = (request: TtlvItem, socket: TLSSocket) => void;

function response(
  batchId: Uint8Array | undefined,
  op: number,
  status: number,
  extra: TtlvItem[] = [],
): Uint8Array {
  return encodeTtlv(
    ttlv.structure(TAG.ResponseMessage, [
      ttlv.structure(TAG.ResponseHeader, [
        ttlv.structure(TAG.ProtocolVersion, [
          ttlv.integer(TAG.ProtocolVersionMajor, 1),
          ttlv.integer(TAG.ProtocolVersionMinor, 4),
        ]),
        ttlv.dateTime(TAG.TimeStamp, 0x4f9a54e5n),
        ttlv.integer(TAG.BatchCount, 1),
      ]),
      ttlv.structure(TAG.BatchItem, [
        ttlv.enumeration(TAG.Operation, op),
        ...(batchId === undefined ? [] : [ttlv.bytes(TAG.UniqueBatchItemId, batchId)]),
        ttlv.enumeration(TAG.ResultStatus, status),
        ...extra,
      ]),
    ]),
  );
}

const batchIdOf = (req: TtlvItem): Uint8Array =>
  child(child(req, TAG.BatchItem, 'Structure'), TAG.UniqueBatchItemId, 'ByteString').value;

describe.skipIf(!hasOpenssl)('KMIP client against a hostile server', () => {
  const home = tempDir('latchkey-kmip-client-');
  let server: Server;
  let port = 0;
  let reply: Reply = () => undefined;
  let client: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    const pki = makeKmipPki(home.dir);
    const s = pki.issue('fake-server', 'serverAuth');
    const c = pki.issue('fake-client', 'clientAuth');
    client = { ca: pki.ca, cert: c.cert, key: c.key };
    server = createServer(
      { cert: s.cert, key: s.key, ca: pki.ca, requestCert: true, rejectUnauthorized: true },
      (sock) => {
        let buf = Buffer.alloc(0);
        sock.on('error', () => undefined);
        sock.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length < 8) return;
          const total = 8 + buf.readUInt32BE(4);
          if (buf.length < total) return;
          const req = decodeTtlv(new Uint8Array(buf.subarray(0, total)));
          buf = buf.subarray(total);
          reply(req, sock);
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const addr = server.address();
    port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    home.cleanup();
  });

  const kmip = (): KmipClient =>
    new KmipClient({ host: '127.0.0.1', port, ...client, timeoutMs: 500, maxResponseBytes: 4096 });
  const failure = async (p: Promise<unknown>): Promise<LatchkeyError> => {
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(LatchkeyError.is(err, 'KEY_UNAVAILABLE')).toBe(true);
    return err as LatchkeyError;
  };

  it('works when the server plays by the rules', async () => {
    reply = (req, sock) =>
      sock.write(
        response(batchIdOf(req), 8, 0, [
          ttlv.structure(TAG.ResponsePayload, [ttlv.text(TAG.UniqueIdentifier, 'k1')]),
        ]),
      );
    const c = kmip();
    expect(await c.locate('kek')).toEqual(['k1']);
    expect(await Promise.all([c.locate('a'), c.locate('b'), c.locate('c')])).toEqual([
      ['k1'],
      ['k1'],
      ['k1'],
    ]);
    c.close();
  });

  it('maps a failed operation to KmipResultError with the reason', async () => {
    reply = (req, sock) =>
      sock.write(
        response(batchIdOf(req), 8, 1, [
          ttlv.enumeration(TAG.ResultReason, 0x0c),
          ttlv.text(TAG.ResultMessage, 'no'),
        ]),
      );
    const c = kmip();
    const err = await failure(c.locate('kek'));
    expect(err).toBeInstanceOf(KmipResultError);
    expect(err).toMatchObject({
      reason: 0x0c,
      status: 1,
      message: 'KMIP Locate failed: Permission Denied',
      detail: 'no',
    });
    c.close();
  });

  it('refuses garbage, oversized frames, lying lengths and answers to another request', async () => {
    const cases: Reply[] = [
      (_req, sock) => sock.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')),
      (_req, sock) => sock.write(Buffer.from('42007b0100100000', 'hex')),
      (req, sock) => {
        const good = Buffer.from(response(batchIdOf(req), 8, 0));
        good.writeUInt32BE(good.length - 8 + 16, 4);
        sock.write(good);
      },
      (req, sock) => {
        const good = Buffer.from(response(batchIdOf(req), 8, 0));
        // An inner length that runs past its structure.
        good.writeUInt32BE(0xffff, 12);
        sock.write(good);
      },
      (_req, sock) => sock.write(response(new Uint8Array(8), 8, 0)),
      (req, sock) => sock.write(response(batchIdOf(req), 31, 0)),
      (_req, sock) => sock.destroy(),
      () => undefined,
    ];
    for (const r of cases) {
      reply = r;
      const c = kmip();
      await failure(c.locate('kek'));
      c.close();
    }
    // A second, unasked-for response drops the connection; the next call opens a new one.
    reply = (req, sock) => {
      sock.write(response(batchIdOf(req), 8, 0));
      setTimeout(() => sock.write(response(batchIdOf(req), 8, 0)), 20);
    };
    const twice = kmip();
    expect(await twice.locate('kek')).toEqual([]);
    await new Promise((r) => setTimeout(r, 100));
    expect(await twice.locate('kek')).toEqual([]);
    twice.close();
    // The client recovers on a new connection once the server behaves.
    const c = kmip();
    reply = () => undefined;
    await failure(c.locate('kek'));
    reply = (req, sock) => sock.write(response(batchIdOf(req), 8, 0));
    expect(await c.locate('kek')).toEqual([]);
    c.close();
    expect(await failure(c.locate('kek'))).toMatchObject({ message: 'KMIP client is closed' });
  });
});
