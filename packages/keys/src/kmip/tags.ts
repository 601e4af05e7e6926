/**
 * The KMIP 1.4 tags and enumeration values the client uses (KMIP 1.4 §9.1.3.1 "Tags" and
 * §9.1.3.2 "Enumerations"). Only what Latchkey sends or reads; not the whole registry.
 */

export const TAG = {
  Attribute: 0x420008,
  AttributeIndex: 0x420009,
  AttributeName: 0x42000a,
  AttributeValue: 0x42000b,
  AuthenticatedEncryptionAdditionalData: 0x4200fe,
  AuthenticatedEncryptionTag: 0x4200ff,
  BatchCount: 0x42000d,
  BatchItem: 0x42000f,
  BlockCipherMode: 0x420011,
  CryptographicAlgorithm: 0x420028,
  CryptographicLength: 0x42002a,
  CryptographicParameters: 0x42002b,
  CryptographicUsageMask: 0x42002c,
  Data: 0x4200c2,
  IvCounterNonce: 0x42003d,
  MaximumResponseSize: 0x420050,
  Name: 0x420053,
  NameType: 0x420054,
  NameValue: 0x420055,
  ObjectType: 0x420057,
  Operation: 0x42005c,
  PaddingMethod: 0x42005f,
  ProtocolVersion: 0x420069,
  ProtocolVersionMajor: 0x42006a,
  ProtocolVersionMinor: 0x42006b,
  RequestHeader: 0x420077,
  RequestMessage: 0x420078,
  RequestPayload: 0x420079,
  ResponseHeader: 0x42007a,
  ResponseMessage: 0x42007b,
  ResponsePayload: 0x42007c,
  ResultMessage: 0x42007d,
  ResultReason: 0x42007e,
  ResultStatus: 0x42007f,
  RevocationMessage: 0x420080,
  RevocationReason: 0x420081,
  RevocationReasonCode: 0x420082,
  State: 0x42008d,
  TagLength: 0x4200ce,
  TemplateAttribute: 0x420091,
  TimeStamp: 0x420092,
  UniqueBatchItemId: 0x420093,
  UniqueIdentifier: 0x420094,
  Sensitive: 0x420120,
  AlwaysSensitive: 0x420121,
  Extractable: 0x420122,
  NeverExtractable: 0x420123,
} as const;

/** Operation (§9.1.3.2.27). */
export const OPERATION = {
  Create: 1,
  Locate: 8,
  GetAttributes: 11,
  Activate: 18,
  Revoke: 19,
  Destroy: 20,
  Encrypt: 31,
  Decrypt: 32,
} as const;

export type KmipOperation = keyof typeof OPERATION;

export const OBJECT_TYPE = { SymmetricKey: 2 } as const;
export const CRYPTOGRAPHIC_ALGORITHM = { AES: 3 } as const;
export const BLOCK_CIPHER_MODE = { GCM: 9 } as const;
export const NAME_TYPE = { UninterpretedTextString: 1 } as const;
export const REVOCATION_REASON_CODE = { CessationOfOperation: 5 } as const;

/** Cryptographic Usage Mask bits (§9.1.3.3.1). */
export const USAGE_MASK = { Encrypt: 0x4, Decrypt: 0x8, WrapKey: 0x10, UnwrapKey: 0x20 } as const;

/** State (§9.1.3.2.18). */
export const STATE_NAMES: Readonly<Record<number, string>> = {
  1: 'Pre-Active',
  2: 'Active',
  3: 'Deactivated',
  4: 'Compromised',
  5: 'Destroyed',
  6: 'Destroyed Compromised',
};

/** Result Status (§9.1.3.2.28). */
export const RESULT_STATUS = {
  Success: 0,
  OperationFailed: 1,
  OperationPending: 2,
  OperationUndone: 3,
} as const;

/** Result Reason (§9.1.3.2.29): the names a failed operation is reported with. */
export const RESULT_REASON_NAMES: Readonly<Record<number, string>> = {
  0x01: 'Item Not Found',
  0x02: 'Response Too Large',
  0x03: 'Authentication Not Successful',
  0x04: 'Invalid Message',
  0x05: 'Operation Not Supported',
  0x06: 'Missing Data',
  0x07: 'Invalid Field',
  0x08: 'Feature Not Supported',
  0x09: 'Operation Canceled By Requester',
  0x0a: 'Cryptographic Failure',
  0x0b: 'Illegal Operation',
  0x0c: 'Permission Denied',
  0x0d: 'Object archived',
  0x0e: 'Index Out of Bounds',
  0x0f: 'Application Namespace Not Supported',
  0x10: 'Key Format Type Not Supported',
  0x11: 'Key Compression Type Not Supported',
  0x12: 'Encoding Option Error',
  0x13: 'Key Value Not Present',
  0x14: 'Attestation Required',
  0x15: 'Attestation Failed',
  0x16: 'Sensitive',
  0x17: 'Not Extractable',
  0x18: 'Object Already Exists',
  0x100: 'General Failure',
};

export const RESULT_REASON = {
  ItemNotFound: 0x01,
  CryptographicFailure: 0x0a,
  PermissionDenied: 0x0c,
  GeneralFailure: 0x100,
} as const;
