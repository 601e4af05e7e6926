/**
 * Installs the node backends (AES-256-GCM, Ed25519, X25519, SHA-256, base64url, random bytes) into the native slot
 * (_native.ts).
 * Imported for its effect, first, by every `node` entry in src/node/; listed in package.json's
 * `sideEffects` so that no bundler drops it.
 */
import { nodeAesGcmDecrypt, nodeAesGcmEncrypt } from './_aead-node.ts';
import { nodeFromBase64Url, nodeToBase64Url } from './_base64-node.ts';
import { native } from './_native.ts';
import { nodeRandomBytes } from './_random-node.ts';
import { nodeSha256, nodeSha256Stream } from './_sha256-node.ts';
import { nodeEd25519Sign, nodeEd25519Verify } from './_sign-node.ts';
import { nodeX25519PublicKey, nodeX25519SharedSecret } from './_x25519-node.ts';

native.aead = { encrypt: nodeAesGcmEncrypt, decrypt: nodeAesGcmDecrypt };
native.ed25519 = { sign: nodeEd25519Sign, verify: nodeEd25519Verify };
native.x25519 = { publicKey: nodeX25519PublicKey, sharedSecret: nodeX25519SharedSecret };
native.base64 = { encode: nodeToBase64Url, decode: nodeFromBase64Url };
native.sha256 = nodeSha256;
native.sha256Stream = nodeSha256Stream;
native.randomBytes = nodeRandomBytes;
