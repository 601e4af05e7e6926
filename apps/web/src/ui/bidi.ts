/**
 * Bidirectional text safety for message text (Unicode Standard Annex #9, "Unicode Bidirectional
 * Algorithm", §2.1-2.4 explicit formatting characters). Message text is attacker-controlled: a
 * right-to-left override (U+202E) makes "refund ‮001$" read "refund $100". Each message is
 * already its own isolated paragraph (`dir="auto"`, `unicode-bidi: isolate`), so nothing leaks
 * into the UI around it; inside the message, the explicit embeddings, overrides and isolates
 * (U+202A..U+202E, U+2066..U+2069) are not passed through but shown as visible marks such as
 * `[U+202E]` (as `latchkey read` escapes control characters), so they cannot reorder the text
 * either. Implicit marks (U+200E, U+200F, U+061C) stay: they steer neutral characters in
 * legitimate mixed-direction text and cannot reverse a run.
 */
import { h } from './dom.ts';

const NAMES: Record<string, string> = {
  '\u202A': 'left-to-right embedding',
  '\u202B': 'right-to-left embedding',
  '\u202C': 'pop directional formatting',
  '\u202D': 'left-to-right override',
  '\u202E': 'right-to-left override',
  '\u2066': 'left-to-right isolate',
  '\u2067': 'right-to-left isolate',
  '\u2068': 'first strong isolate',
  '\u2069': 'pop directional isolate',
};

const EXPLICIT = /[\u202A-\u202E\u2066-\u2069]/g;
const HAS_EXPLICIT = /[\u202A-\u202E\u2066-\u2069]/;

/**
 * The text as nodes for an element: plain strings, with every explicit directional formatting
 * character replaced by a visible, labelled, isolated mark (`.lk-bidi-mark`).
 */
export function bidiSafeText(text: string): (string | HTMLElement)[] {
  if (!HAS_EXPLICIT.test(text)) return text.length > 0 ? [text] : [];
  const out: (string | HTMLElement)[] = [];
  let last = 0;
  for (const m of text.matchAll(EXPLICIT)) {
    const ch = m[0];
    const code = `U+${ch.charCodeAt(0).toString(16).toUpperCase()}`;
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(
      h(
        'span',
        {
          class: 'lk-bidi-mark',
          dir: 'ltr',
          title: `${NAMES[ch] ?? 'directional control'} (${code}), not applied`,
        },
        `[${code}]`,
      ),
    );
    last = m.index + ch.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
