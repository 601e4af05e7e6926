/**
 * Tiny DOM helpers for the widget and the console. Text always goes in through textContent,
 * never innerHTML: message text is attacker-controlled (any member of a contact can send it).
 */
type Attrs = Record<string, string | number | boolean | undefined>;

/** Creates an element with attributes (booleans toggle presence) and children (text or nodes). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** Sets an element's text, replacing whatever it held. */
export function setText(el: Element, text: string): void {
  el.textContent = text;
}

let counter = 0;
/** A document-unique id for label/for pairs. */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

let clockFormat: Intl.DateTimeFormat | null = null;
/** Formatted minutes (ms since the epoch / 60,000), the latest few. */
const clockCache = new Map<number, string>();
const CLOCK_CACHE_MAX = 64;
/** 1980-01-01: since 1972 every zone's UTC offset is a whole number of minutes. */
const WHOLE_MINUTE_OFFSETS_SINCE = 315_532_800_000;
/**
 * Hours and minutes of a timestamp in the reader's locale. One formatter for all: each
 * `toLocaleTimeString` call builds its own (~0.7 ms, most of drawing a message); and one
 * `format` call per minute shown: a history's messages share a few minutes.
 */
export function clock(ms: number): string {
  clockFormat ??= new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
  if (!(ms >= WHOLE_MINUTE_OFFSETS_SINCE)) return clockFormat.format(ms);
  const minute = Math.floor(ms / 60_000);
  let text = clockCache.get(minute);
  if (text === undefined) {
    text = clockFormat.format(ms);
    if (clockCache.size >= CLOCK_CACHE_MAX) clockCache.delete(clockCache.keys().next().value!);
    clockCache.set(minute, text);
  }
  return text;
}
