/**
 * Image thumbnails made in the sender's browser before a file is sent (docs/web.md
 * "Attachments"): the picked file is decoded with `createImageBitmap` (no `<img>` of untrusted
 * bytes, no SVG: only PNG, JPEG, WebP and GIF, by declared type and by their header, which must
 * also give a sane size: image-header.ts), drawn
 * scaled to at most 320 px on an OffscreenCanvas (or a detached canvas) and encoded as JPEG,
 * lowering the quality until it fits in FILE_LIMITS.maxThumbnailBytes; otherwise no thumbnail.
 * The thumbnail is encrypted and sent as a blob of its own by the client.
 */
import { FILE_LIMITS } from '@latchkey/protocol';
import { readImageHeader } from './image-header.ts';

/** The image types a thumbnail is made of; never SVG (script, external references). */
export const THUMBNAIL_INPUT_TYPES: ReadonlySet<string> = new Set([
  'image/png',
  'image/jpeg',
  'image/webp',
  'image/gif',
]);
/** Longest side of a thumbnail in CSS pixels. */
export const THUMBNAIL_MAX_SIDE = 320;
/** Bigger pictures are not decoded for a thumbnail (memory), they are sent without one. */
export const THUMBNAIL_MAX_INPUT_BYTES = 40 * 1024 * 1024;
/** Pictures with more pixels than this are not decoded (a decompression bomb). */
const MAX_INPUT_PIXELS = 64 * 1024 * 1024;
/** How much of the file is read for its header (a JPEG's EXIF can come first). */
const HEADER_BYTES = 256 * 1024;
/** JPEG qualities tried in turn until the thumbnail fits. */
const QUALITIES = [0.85, 0.7, 0.55, 0.4, 0.25] as const;

export interface Thumbnail {
  bytes: Uint8Array;
  type: 'image/jpeg';
  width: number;
  height: number;
}

export interface ThumbnailOptions {
  maxSide?: number;
  maxBytes?: number;
}

/** The size of a `width` x `height` picture scaled to fit `maxSide`, never enlarged. */
export function fitWithin(
  width: number,
  height: number,
  maxSide: number,
): { width: number; height: number } {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  return {
    width: Math.max(1, Math.round(width * scale)),
    height: Math.max(1, Math.round(height * scale)),
  };
}

type Canvas2D = OffscreenCanvasRenderingContext2D | CanvasRenderingContext2D;

function canvasOf(
  width: number,
  height: number,
): { ctx: Canvas2D; encode(quality: number): Promise<Blob | null> } | null {
  if (typeof OffscreenCanvas === 'function') {
    const c = new OffscreenCanvas(width, height);
    const ctx = c.getContext('2d');
    if (!ctx) return null;
    return {
      ctx,
      encode: (quality) => c.convertToBlob({ type: 'image/jpeg', quality }).catch(() => null),
    };
  }
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  const ctx = c.getContext('2d');
  if (!ctx) return null;
  return {
    ctx,
    encode: (quality) => new Promise((resolve) => c.toBlob(resolve, 'image/jpeg', quality)),
  };
}

/**
 * A JPEG thumbnail of an image file, or null when the file is no supported image, cannot be
 * decoded, or no quality makes it small enough. Never throws.
 */
export async function makeThumbnail(
  file: Blob,
  opts: ThumbnailOptions = {},
): Promise<Thumbnail | null> {
  const maxSide = opts.maxSide ?? THUMBNAIL_MAX_SIDE;
  const maxBytes = opts.maxBytes ?? FILE_LIMITS.maxThumbnailBytes;
  if (!THUMBNAIL_INPUT_TYPES.has(file.type.toLowerCase())) return null;
  if (file.size === 0 || file.size > THUMBNAIL_MAX_INPUT_BYTES) return null;
  if (typeof createImageBitmap !== 'function') return null;
  let bitmap: ImageBitmap | null = null;
  try {
    // The declared type is the picker's guess from the name: the bytes must be a picture too,
    // and one small enough to decode, before anything decodes them.
    const header = readImageHeader(new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer()));
    if (!header || header.width * header.height > MAX_INPUT_PIXELS) return null;
    bitmap = await createImageBitmap(file);
    if (bitmap.width < 1 || bitmap.height < 1) return null;
    if (bitmap.width * bitmap.height > MAX_INPUT_PIXELS) return null;
    const size = fitWithin(bitmap.width, bitmap.height, maxSide);
    const canvas = canvasOf(size.width, size.height);
    if (!canvas) return null;
    // JPEG has no alpha: transparent parts become white, not black.
    canvas.ctx.fillStyle = '#fff';
    canvas.ctx.fillRect(0, 0, size.width, size.height);
    canvas.ctx.imageSmoothingQuality = 'high';
    canvas.ctx.drawImage(bitmap, 0, 0, size.width, size.height);
    for (const quality of QUALITIES) {
      const blob = await canvas.encode(quality);
      // A browser without a JPEG encoder hands back PNG: not what we declare, so none.
      if (!blob || blob.type !== 'image/jpeg') return null;
      if (blob.size <= maxBytes && blob.size > 0) {
        return {
          bytes: new Uint8Array(await blob.arrayBuffer()),
          type: 'image/jpeg',
          ...size,
        };
      }
    }
    return null;
  } catch {
    return null; // not decodable: sent without a thumbnail
  } finally {
    bitmap?.close();
  }
}
