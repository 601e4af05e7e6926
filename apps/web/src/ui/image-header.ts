/**
 * What the first bytes of a picture say it is: PNG (IHDR), GIF (logical screen), WebP (VP8,
 * VP8L or VP8X) or JPEG (its first SOFn frame header), with its width and height in pixels,
 * read from the header without decoding anything. Previews are made only of thumbnails whose
 * bytes are of the declared type and no larger than a thumbnail may be (a small file can declare
 * a huge picture: a decompression bomb), and thumbnails only of pictures of a sane size.
 */

export type ImageKind = 'image/png' | 'image/gif' | 'image/webp' | 'image/jpeg';

export interface ImageHeader {
  type: ImageKind;
  width: number;
  height: number;
}

const u16be = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;
const u16le = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8);
const u24le = (b: Uint8Array, i: number): number => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16);
const u32be = (b: Uint8Array, i: number): number => u16be(b, i) * 65536 + u16be(b, i + 2);
const ascii = (b: Uint8Array, i: number, s: string): boolean =>
  [...s].every((c, k) => b[i + k] === c.charCodeAt(0));

function png(b: Uint8Array): ImageHeader | null {
  if (b.length < 24 || !ascii(b, 12, 'IHDR')) return null;
  return { type: 'image/png', width: u32be(b, 16), height: u32be(b, 20) };
}

function gif(b: Uint8Array): ImageHeader | null {
  if (b.length < 10) return null;
  return { type: 'image/gif', width: u16le(b, 6), height: u16le(b, 8) };
}

function webp(b: Uint8Array): ImageHeader | null {
  if (b.length < 30) return null;
  if (ascii(b, 12, 'VP8 ')) {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return { type: 'image/webp', width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
  }
  if (ascii(b, 12, 'VP8L')) {
    if (b[20] !== 0x2f) return null;
    const bits = b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24);
    return { type: 'image/webp', width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (ascii(b, 12, 'VP8X'))
    return { type: 'image/webp', width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
  return null;
}

function jpeg(b: Uint8Array): ImageHeader | null {
  let i = 2;
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Markers without a length: TEM and RSTn; SOS or EOI before a frame header: none found.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null;
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame) return { type: 'image/jpeg', width: u16be(b, i + 7), height: u16be(b, i + 5) };
    const length = u16be(b, i + 2);
    if (length < 2) return null;
    i += 2 + length;
  }
  return null;
}

/** The picture's type and size from its first bytes, or null when they are no header known here. */
export function readImageHeader(b: Uint8Array): ImageHeader | null {
  const at = (i: number, ...bytes: number[]) => bytes.every((x, k) => b[i + k] === x);
  let h: ImageHeader | null = null;
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) h = png(b);
  else if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) h = gif(b);
  else if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) h = webp(b);
  else if (at(0, 0xff, 0xd8, 0xff)) h = jpeg(b);
  return h && h.width > 0 && h.height > 0 ? h : null;
}
