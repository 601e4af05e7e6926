/** Hex helpers for tests (lowercase, no separators). */
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';

export const hex = (text: string): Uint8Array => hexToBytes(text);
export const toHex = (bytes: Uint8Array): string => bytesToHex(bytes);
