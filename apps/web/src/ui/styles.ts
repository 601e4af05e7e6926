/**
 * Styles of the widget and the console, scoped under `lk-` class names so that they neither
 * leak into nor depend on the embedding page. Colours keep a contrast ratio of at least 4.5:1
 * (WCAG 2.2 SC 1.4.3); focus stays visible (SC 2.4.7); layouts work from 360 px wide.
 */
export const CSS = `
.lk-root{--lk-fg:#1b1f24;--lk-muted:#4a5561;--lk-bg:#fff;--lk-soft:#f1f4f8;--lk-line:#c9d1db;
--lk-accent:#0b57d0;--lk-accent-fg:#fff;--lk-ok:#146c2e;--lk-warn:#8a4b00;--lk-bad:#b3261e;
font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--lk-fg);background:var(--lk-bg);box-sizing:border-box}
.lk-root *,.lk-root *::before,.lk-root *::after{box-sizing:inherit}
.lk-root :focus-visible{outline:3px solid var(--lk-accent);outline-offset:2px}
.lk-conv{display:flex;flex-direction:column;min-height:0;height:100%;border:1px solid var(--lk-line);border-radius:10px;overflow:hidden;background:var(--lk-bg)}
.lk-head{display:flex;flex-wrap:wrap;gap:6px 10px;align-items:center;justify-content:space-between;padding:8px 12px;background:var(--lk-soft);border-bottom:1px solid var(--lk-line)}
.lk-title{font-weight:600;margin:0;font-size:15px}
.lk-status{font-size:13px;font-weight:600;padding:2px 8px;border-radius:999px;border:1px solid currentColor}
.lk-status[data-status=connected]{color:var(--lk-ok)}
.lk-status[data-status=connecting],.lk-status[data-status=reconnecting]{color:var(--lk-warn)}
.lk-status[data-status=offline]{color:var(--lk-bad)}
.lk-e2e{display:flex;flex-wrap:wrap;gap:4px;align-items:baseline;font-size:12px;color:var(--lk-ok);width:100%}
.lk-e2e strong{font-size:13px}
.lk-lock{align-self:center}
.lk-fp{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--lk-fg);word-break:break-all}
.lk-messages{list-style:none;margin:0;padding:12px 12px 4px;flex:1 1 auto;min-height:160px;overflow-y:auto;display:block}
.lk-empty{color:var(--lk-muted);font-size:14px;text-align:center;margin:0;padding:64px 0}
.lk-msg{width:fit-content;max-width:85%;margin:0 auto 8px 0;padding:6px 10px;border-radius:10px;background:var(--lk-soft);border:1px solid var(--lk-line);content-visibility:auto;contain-intrinsic-size:auto 240px auto 96px}
.lk-msg[data-own=true]{margin:0 0 8px auto;background:#e3ecfd;border-color:#a9c1ee}
.lk-msg[data-state=undecryptable]{background:#fdecea;border-color:var(--lk-bad)}
.lk-meta{display:flex;flex-wrap:wrap;gap:6px;font-size:12px;color:var(--lk-muted)}
.lk-text{margin:2px 0 0;white-space:pre-wrap;overflow-wrap:anywhere;unicode-bidi:isolate}
.lk-sender{unicode-bidi:isolate}
.lk-bidi-mark{unicode-bidi:isolate;direction:ltr;font:11px/1 ui-monospace,monospace;color:var(--lk-bad);border:1px solid currentColor;border-radius:3px;padding:0 2px;margin:0 1px}
.lk-msg[data-state=suspect]{background:#fff4e5;border:2px dashed var(--lk-warn)}
.lk-warning{margin:2px 0 0;color:var(--lk-warn);font-size:13px}
.lk-suspect-text{margin:4px 0 0;padding:2px 8px;border-left:3px solid var(--lk-warn);color:var(--lk-muted);font-style:italic;white-space:pre-wrap;overflow-wrap:anywhere}
.lk-suspect-label{font-style:normal;font-weight:600}
.lk-suspect-body{unicode-bidi:isolate}
.lk-gap{width:fit-content;margin:0 auto 8px;font-size:12px;color:var(--lk-warn);background:var(--lk-bg);border:1px dashed var(--lk-warn);border-radius:999px;padding:2px 10px}
.lk-msg[data-state=undecryptable] .lk-text{color:var(--lk-bad);font-style:italic}
.lk-state[data-state=failed]{color:var(--lk-bad);font-weight:600}
.lk-msg[data-receipt=delivered] .lk-state::after{content:" · Received"}
.lk-msg[data-receipt=seen] .lk-state::after{content:" · Seen";color:var(--lk-accent)}
.lk-typing{margin:0;padding:2px 12px;min-height:1.5em;font-size:12px;font-style:italic;color:var(--lk-muted)}
.lk-retry{margin-left:4px;font:inherit;font-size:12px;padding:1px 8px;border-radius:6px;border:1px solid var(--lk-bad);color:var(--lk-bad);background:var(--lk-bg);cursor:pointer}
.lk-composer{display:flex;gap:8px;padding:10px;border-top:1px solid var(--lk-line);background:var(--lk-bg)}
.lk-sr{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
.lk-input{flex:1 1 auto;min-width:0;width:0;resize:none;font:inherit;padding:8px 10px;border:1px solid #6b7785;border-radius:8px;color:var(--lk-fg);background:var(--lk-bg)}
.lk-btn{font:inherit;font-weight:600;padding:8px 14px;border-radius:8px;border:1px solid var(--lk-accent);background:var(--lk-accent);color:var(--lk-accent-fg);cursor:pointer}
.lk-btn[disabled]{opacity:.6;cursor:not-allowed}
.lk-btn-quiet{background:var(--lk-bg);color:var(--lk-accent)}
.lk-note{font-size:12px;color:var(--lk-muted);margin:0;padding:0 12px 8px}
.lk-attach{padding:8px;display:inline-flex;align-items:center;justify-content:center}
.lk-conv[data-drop=active]{outline:3px dashed var(--lk-accent);outline-offset:-3px}
.lk-uploads{display:flex;flex-direction:column;gap:4px;padding:0 10px}
.lk-uploads:empty{display:none}
.lk-progress{display:flex;flex-wrap:wrap;align-items:center;gap:4px 8px;font-size:12px;color:var(--lk-muted);padding:4px 0}
.lk-progress-label{flex:1 1 100%;min-width:0;overflow-wrap:anywhere;unicode-bidi:isolate}
.lk-progress-bar{flex:1 1 120px;height:8px;border-radius:4px;background:var(--lk-soft);border:1px solid var(--lk-line);overflow:hidden}
.lk-progress-fill{display:block;height:100%;width:0;background:var(--lk-accent)}
.lk-upload-error{margin:4px 0;font-size:13px;color:var(--lk-bad);overflow-wrap:anywhere}
.lk-file{display:flex;flex-direction:column;gap:4px;margin-top:4px;padding:8px;border:1px solid var(--lk-line);border-radius:8px;background:var(--lk-bg);max-width:340px}
.lk-file-row{display:flex;flex-wrap:wrap;align-items:center;gap:6px 8px}
.lk-file-icon{flex:none;font:700 11px/1 ui-monospace,monospace;padding:6px 4px;min-width:38px;text-align:center;border-radius:4px;background:var(--lk-soft);border:1px solid var(--lk-line);color:var(--lk-fg)}
.lk-file-meta{display:flex;flex-direction:column;flex:1 1 120px;min-width:0}
.lk-file-name{font-weight:600;overflow-wrap:anywhere;unicode-bidi:isolate}
.lk-file-size{font-size:12px;color:var(--lk-muted)}
.lk-scan{font-size:12px;font-weight:600;padding:1px 8px;border-radius:999px;border:1px solid currentColor;color:var(--lk-muted);overflow-wrap:anywhere}
.lk-scan[data-scan=clean]{color:var(--lk-ok)}
.lk-scan[data-scan=pending]{color:var(--lk-warn)}
.lk-scan[data-scan=infected],.lk-scan[data-scan=error]{color:var(--lk-bad)}
.lk-file-dl{padding:4px 10px;font-size:13px}
.lk-file-why,.lk-file-notice{margin:0;font-size:12px;color:var(--lk-muted)}
.lk-file[data-scan=infected] .lk-file-why,.lk-file[data-scan=error] .lk-file-why,.lk-file-notice[data-kind=error]{color:var(--lk-bad)}
.lk-file-preview:empty{display:none}
.lk-thumb{display:block;max-width:100%;height:auto;border-radius:6px;border:1px solid var(--lk-line);background:var(--lk-soft)}
.lk-thumb-wait{height:auto}
.lk-widget{height:520px;max-height:100vh;width:100%;max-width:420px}
.lk-console{display:grid;grid-template-columns:minmax(200px,280px) 1fr;gap:12px;height:100vh;padding:12px;margin:0}
.lk-sidebar{display:flex;flex-direction:column;gap:8px;min-height:0}
.lk-contacts{list-style:none;margin:0;padding:0;overflow-y:auto;border:1px solid var(--lk-line);border-radius:10px}
.lk-contact{display:flex;width:100%;justify-content:space-between;align-items:center;gap:8px;padding:10px 12px;border:0;border-bottom:1px solid var(--lk-line);background:var(--lk-bg);color:var(--lk-fg);font:inherit;text-align:left;cursor:pointer}
.lk-contact[aria-current=true]{background:#e3ecfd;font-weight:600}
.lk-contact-id{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-family:ui-monospace,monospace;font-size:13px}
.lk-contact-sub{display:block;font-size:12px;color:var(--lk-muted);font-family:inherit}
.lk-badge{min-width:22px;text-align:center;padding:1px 7px;border-radius:999px;background:var(--lk-accent);color:var(--lk-accent-fg);font-size:12px;font-weight:700}
.lk-main{display:flex;flex-direction:column;gap:8px;min-height:0;min-width:0}
.lk-pane{flex:1 1 auto;min-height:0;display:flex;flex-direction:column;gap:8px}
.lk-pane[hidden]{display:none}
.lk-pane-bar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;justify-content:space-between}
.lk-people{display:flex;flex-wrap:wrap;gap:6px;list-style:none;margin:0;padding:0;font-size:13px}
.lk-people li{padding:2px 8px;border-radius:999px;background:var(--lk-soft);border:1px solid var(--lk-line)}
@media (max-width:640px){.lk-console{grid-template-columns:1fr;grid-template-rows:auto 1fr;height:auto;min-height:100vh}
.lk-contacts{max-height:30vh}.lk-pane .lk-conv{height:70vh}}
`;

let adopted = false;

/** Adds the styles to the document once (constructable stylesheet: no inline-style CSP hole). */
export function adoptStyles(doc: Document = document): void {
  if (adopted) return;
  adopted = true;
  if (
    'adoptedStyleSheets' in doc &&
    typeof CSSStyleSheet === 'function' &&
    'replaceSync' in CSSStyleSheet.prototype
  ) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
    return;
  }
  const style = doc.createElement('style');
  style.textContent = CSS;
  doc.head.append(style);
}
