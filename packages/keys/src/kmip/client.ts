/**
 * A minimal KMIP 1.4 client over mutual TLS (KMIP 1.4 §6 message contents, §7 message format,
 * §9.1 TTLV; KMIP Profiles 1.4 §3.1 "Basic Authentication Suite" / TLS 1.2): Create, Activate,
 * Get Attributes, Locate, Encrypt, Decrypt (KMIP 1.2+), Revoke, Destroy. Deliberately no Get:
 * nothing here can ask for key material.
 *
 * One TLS connection carries one request at a time (a queue), each a single-item batch with
 * a random Unique Batch Item ID that the response must echo, under a per-request timeout.
 * The server certificate must chain to the configured CA only (the system roots are not
 * trusted) and name the host. Every failure surfaces as LatchkeyError KEY_UNAVAILABLE:
 * transport and protocol errors as such, failed operations as KmipResultError with the
 * server's Result Reason.
 */
import { randomBytes } from '@latchkey/crypto/random';
import { LatchkeyError } from '@latchkey/protocol';
import {
  BLOCK_CIPHER_MODE,
  CRYPTOGRAPHIC_ALGORITHM,
  NAME_TYPE,
  OBJECT_TYPE,
  OPERATION,
  RESULT_REASON_NAMES,
  RESULT_STATUS,
  REVOCATION_REASON_CODE,
  TAG,
  type KmipOperation,
} from './tags.ts';
import { decodeTtlv, encodeTtlv, TtlvError, type TtlvItem } from './ttlv.ts';
import { child, childrenOf, optionalChild, ttlv } from './ttlv-items.ts';
import { Connection, unavailable, type KmipClientOptions } from './connection.ts';

export type { KmipClientOptions } from './connection.ts';

/** A failed KMIP operation: Result Status was not Success. Code KEY_UNAVAILABLE. */
export class KmipResultError extends LatchkeyError {
  constructor(
    readonly operation: KmipOperation,
    /** Result Status (1 Operation Failed, 2 Pending, 3 Undone). */
    readonly status: number,
    /** Result Reason, when the server gave one. */
    readonly reason: number | undefined,
    resultMessage: string | undefined,
  ) {
    const why =
      reason === undefined
        ? `status ${status}`
        : (RESULT_REASON_NAMES[reason] ?? `reason 0x${reason.toString(16)}`);
    super('KEY_UNAVAILABLE', `KMIP ${operation} failed: ${why}`, {
      ...(resultMessage === undefined ? {} : { detail: resultMessage }),
    });
  }
}

/** One attribute as Get Attributes returns it. */
export interface KmipAttribute {
  name: string;
  index: number | undefined;
  value: TtlvItem;
}

export interface KmipCreateOptions {
  /** Name attribute (Uninterpreted Text String), for Locate. */
  name: string;
  /** Cryptographic Usage Mask bits (tags.ts USAGE_MASK). */
  usageMask: number;
  /** KMIP 1.4 Sensitive attribute: the server shall not return the key value in clear. */
  sensitive?: boolean;
  /** KMIP 1.4 Extractable attribute: false forbids returning the key value at all. */
  extractable?: boolean;
}

export interface GcmEncryptOptions {
  /** 96-bit IV chosen by the client. */
  iv: Uint8Array;
  aad: Uint8Array;
  tagLength: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_RESPONSE = 1 << 20;
const ID_BYTES = 8;

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

export class KmipClient {
  private conn: Connection | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly version: { major: number; minor: number };

  constructor(private readonly opts: KmipClientOptions) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE;
    this.version = opts.protocolVersion ?? { major: 1, minor: 4 };
  }

  /**
   * Runs one operation and returns its Response Payload (an empty structure when the server
   * sent none). Calls are queued: one request in flight per connection.
   * @throws KmipResultError when the server reports failure; LatchkeyError KEY_UNAVAILABLE for
   *   transport, timeout, TLS or protocol errors, or after close().
   */
  call(operation: KmipOperation, payload: TtlvItem[]): Promise<TtlvItem> {
    const run = this.tail.then(
      () => this.run(operation, payload),
      () => this.run(operation, payload),
    );
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async run(operation: KmipOperation, payload: TtlvItem[]): Promise<TtlvItem> {
    if (this.closed) throw new LatchkeyError('KEY_UNAVAILABLE', 'KMIP client is closed');
    const id = randomBytes(ID_BYTES);
    const request = encodeTtlv(
      ttlv.structure(TAG.RequestMessage, [
        ttlv.structure(TAG.RequestHeader, [
          ttlv.structure(TAG.ProtocolVersion, [
            ttlv.integer(TAG.ProtocolVersionMajor, this.version.major),
            ttlv.integer(TAG.ProtocolVersionMinor, this.version.minor),
          ]),
          ttlv.integer(TAG.MaximumResponseSize, this.maxBytes),
          ttlv.integer(TAG.BatchCount, 1),
        ]),
        ttlv.structure(TAG.BatchItem, [
          ttlv.enumeration(TAG.Operation, OPERATION[operation]),
          ttlv.bytes(TAG.UniqueBatchItemId, id),
          ttlv.structure(TAG.RequestPayload, payload),
        ]),
      ]),
    );
    let frame: Uint8Array;
    try {
      frame = await this.send(request, operation !== 'Create');
    } catch (err) {
      throw unavailable('KMIP server unavailable', err);
    }
    return this.parse(operation, id, frame);
  }

  /** Sends on the open connection, or a new one; retries once on a fresh connection when a stale one fails before answering. */
  private async send(request: Uint8Array, idempotent: boolean): Promise<Uint8Array> {
    for (let attempt = 0; ; attempt++) {
      let conn = this.conn;
      const reused = conn !== undefined && conn.alive;
      if (conn === undefined || !conn.alive) {
        conn = await Connection.open(this.opts, this.timeoutMs, this.maxBytes);
        if (this.closed) {
          conn.close();
          throw new LatchkeyError('KEY_UNAVAILABLE', 'KMIP client closed');
        }
        this.conn = conn;
      }
      try {
        return await conn.exchange(request, this.timeoutMs);
      } catch (err) {
        // A server may drop idle connections; only then is a resend safe and useful.
        const timedOut = err instanceof Error && err.message.startsWith('no KMIP response');
        if (!(idempotent && reused && attempt === 0 && !timedOut)) throw err;
      }
    }
  }

  private parse(operation: KmipOperation, id: Uint8Array, frame: Uint8Array): TtlvItem {
    try {
      const msg = decodeTtlv(frame, { maxBytes: this.maxBytes });
      const header = child(msg, TAG.ResponseHeader, 'Structure');
      const count = child(header, TAG.BatchCount, 'Integer').value;
      const items = childrenOf(msg, TAG.BatchItem, 'Structure');
      if (count !== 1 || items.length !== 1)
        throw new TtlvError('UNEXPECTED', `expected one batch item, got ${items.length}`);
      const item = items[0]!;
      const status = child(item, TAG.ResultStatus, 'Enumeration').value;
      if (status !== RESULT_STATUS.Success) {
        const reason = optionalChild(item, TAG.ResultReason, 'Enumeration')?.value;
        const message = optionalChild(item, TAG.ResultMessage, 'TextString')?.value;
        throw new KmipResultError(operation, status, reason, message);
      }
      const echoed = optionalChild(item, TAG.UniqueBatchItemId, 'ByteString')?.value;
      if (echoed === undefined || !sameBytes(echoed, id))
        throw new TtlvError(
          'UNEXPECTED',
          'response does not answer this request (Unique Batch Item ID)',
        );
      const op = optionalChild(item, TAG.Operation, 'Enumeration')?.value;
      if (op !== OPERATION[operation])
        throw new TtlvError(
          'UNEXPECTED',
          `response is for operation ${String(op)}, not ${operation}`,
        );
      return (
        optionalChild(item, TAG.ResponsePayload, 'Structure') ??
        ttlv.structure(TAG.ResponsePayload, [])
      );
    } catch (err) {
      if (err instanceof KmipResultError) throw err;
      // The stream may be out of step with what we think: start over on a new connection.
      this.conn?.close();
      this.conn = undefined;
      throw unavailable('malformed KMIP response', err);
    }
  }

  /** Reads the Unique Identifier of a response payload. */
  private static uid(payload: TtlvItem): string {
    try {
      return child(payload, TAG.UniqueIdentifier, 'TextString').value;
    } catch (err) {
      throw unavailable('malformed KMIP response', err);
    }
  }

  /**
   * Create: a new AES-256 symmetric key in the server, in the Pre-Active state.
   * @returns its Unique Identifier. @throws as call().
   */
  async create(o: KmipCreateOptions): Promise<string> {
    const attr = (name: string, value: TtlvItem): TtlvItem =>
      ttlv.structure(TAG.Attribute, [ttlv.text(TAG.AttributeName, name), value]);
    const v = TAG.AttributeValue;
    const attrs = [
      attr('Cryptographic Algorithm', ttlv.enumeration(v, CRYPTOGRAPHIC_ALGORITHM.AES)),
      attr('Cryptographic Length', ttlv.integer(v, 256)),
      attr('Cryptographic Usage Mask', ttlv.integer(v, o.usageMask)),
      attr(
        'Name',
        ttlv.structure(v, [
          ttlv.text(TAG.NameValue, o.name),
          ttlv.enumeration(TAG.NameType, NAME_TYPE.UninterpretedTextString),
        ]),
      ),
    ];
    if (o.sensitive !== undefined) attrs.push(attr('Sensitive', ttlv.boolean(v, o.sensitive)));
    if (o.extractable !== undefined)
      attrs.push(attr('Extractable', ttlv.boolean(v, o.extractable)));
    const res = await this.call('Create', [
      ttlv.enumeration(TAG.ObjectType, OBJECT_TYPE.SymmetricKey),
      ttlv.structure(TAG.TemplateAttribute, attrs),
    ]);
    return KmipClient.uid(res);
  }

  /** Activate: Pre-Active to Active. @throws as call(). */
  async activate(id: string): Promise<void> {
    await this.call('Activate', [ttlv.text(TAG.UniqueIdentifier, id)]);
  }

  /** Get Attributes: the named attributes of an object (all, when `names` is empty). @throws as call(). */
  async getAttributes(id: string, names: string[] = []): Promise<KmipAttribute[]> {
    const res = await this.call('GetAttributes', [
      ttlv.text(TAG.UniqueIdentifier, id),
      ...names.map((n) => ttlv.text(TAG.AttributeName, n)),
    ]);
    try {
      return childrenOf(res, TAG.Attribute, 'Structure').map((a) => {
        const value = a.value.find((x) => x.tag === TAG.AttributeValue);
        if (value === undefined) throw new TtlvError('UNEXPECTED', 'attribute without a value');
        return {
          name: child(a, TAG.AttributeName, 'TextString').value,
          index: optionalChild(a, TAG.AttributeIndex, 'Integer')?.value,
          value,
        };
      });
    } catch (err) {
      throw unavailable('malformed KMIP response', err);
    }
  }

  /** Locate: the identifiers of the symmetric keys with this Name. @throws as call(). */
  async locate(name: string): Promise<string[]> {
    const attr = (n: string, value: TtlvItem): TtlvItem =>
      ttlv.structure(TAG.Attribute, [ttlv.text(TAG.AttributeName, n), value]);
    const res = await this.call('Locate', [
      attr('Object Type', ttlv.enumeration(TAG.AttributeValue, OBJECT_TYPE.SymmetricKey)),
      attr(
        'Name',
        ttlv.structure(TAG.AttributeValue, [
          ttlv.text(TAG.NameValue, name),
          ttlv.enumeration(TAG.NameType, NAME_TYPE.UninterpretedTextString),
        ]),
      ),
    ]);
    try {
      return childrenOf(res, TAG.UniqueIdentifier, 'TextString').map((x) => x.value);
    } catch (err) {
      throw unavailable('malformed KMIP response', err);
    }
  }

  private static gcmParameters(tagLength: number): TtlvItem {
    return ttlv.structure(TAG.CryptographicParameters, [
      ttlv.enumeration(TAG.BlockCipherMode, BLOCK_CIPHER_MODE.GCM),
      ttlv.enumeration(TAG.CryptographicAlgorithm, CRYPTOGRAPHIC_ALGORITHM.AES),
      ttlv.integer(TAG.TagLength, tagLength),
    ]);
  }

  /**
   * Encrypt (KMIP 1.2+) with AES-GCM under key `id`, inside the server.
   * @throws as call(); KEY_UNAVAILABLE when the server's answer lacks the ciphertext or tag.
   */
  async encryptGcm(
    id: string,
    data: Uint8Array,
    o: GcmEncryptOptions,
  ): Promise<{ ciphertext: Uint8Array; tag: Uint8Array }> {
    const res = await this.call('Encrypt', [
      ttlv.text(TAG.UniqueIdentifier, id),
      KmipClient.gcmParameters(o.tagLength),
      ttlv.bytes(TAG.Data, data),
      ttlv.bytes(TAG.IvCounterNonce, o.iv),
      ttlv.bytes(TAG.AuthenticatedEncryptionAdditionalData, o.aad),
    ]);
    try {
      const ciphertext = child(res, TAG.Data, 'ByteString').value;
      const tag = child(res, TAG.AuthenticatedEncryptionTag, 'ByteString').value;
      const iv = optionalChild(res, TAG.IvCounterNonce, 'ByteString')?.value;
      if (iv !== undefined && !sameBytes(iv, o.iv))
        throw new TtlvError('UNEXPECTED', 'server used another IV');
      if (tag.length !== o.tagLength)
        throw new TtlvError('UNEXPECTED', `tag of ${tag.length} bytes`);
      if (ciphertext.length !== data.length)
        throw new TtlvError('UNEXPECTED', 'ciphertext length differs from the data');
      return { ciphertext, tag };
    } catch (err) {
      throw unavailable('malformed KMIP response', err);
    }
  }

  /** Decrypt (KMIP 1.2+) with AES-GCM under key `id`, inside the server. @throws as call(). */
  async decryptGcm(
    id: string,
    ciphertext: Uint8Array,
    o: { iv: Uint8Array; aad: Uint8Array; tag: Uint8Array },
  ): Promise<Uint8Array> {
    const res = await this.call('Decrypt', [
      ttlv.text(TAG.UniqueIdentifier, id),
      KmipClient.gcmParameters(o.tag.length),
      ttlv.bytes(TAG.Data, ciphertext),
      ttlv.bytes(TAG.IvCounterNonce, o.iv),
      ttlv.bytes(TAG.AuthenticatedEncryptionAdditionalData, o.aad),
      ttlv.bytes(TAG.AuthenticatedEncryptionTag, o.tag),
    ]);
    try {
      return child(res, TAG.Data, 'ByteString').value;
    } catch (err) {
      throw unavailable('malformed KMIP response', err);
    }
  }

  /** Revoke with reason Cessation of Operation: Active to Deactivated. @throws as call(). */
  async revoke(id: string): Promise<void> {
    await this.call('Revoke', [
      ttlv.text(TAG.UniqueIdentifier, id),
      ttlv.structure(TAG.RevocationReason, [
        ttlv.enumeration(TAG.RevocationReasonCode, REVOCATION_REASON_CODE.CessationOfOperation),
      ]),
    ]);
  }

  /** Destroy (a Pre-Active or Deactivated object). @throws as call(). */
  async destroy(id: string): Promise<void> {
    await this.call('Destroy', [ttlv.text(TAG.UniqueIdentifier, id)]);
  }

  /** Closes the connection; later calls throw KEY_UNAVAILABLE. Idempotent. */
  close(): void {
    this.closed = true;
    this.conn?.close();
    this.conn = undefined;
  }
}
