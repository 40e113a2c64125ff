// Page-wide keys: space plays / pauses, ← / → step, Home / End jump, [ / ] slower /
// faster, L jumps to live, ? shows the keys.
// Typing in a field, and widgets with keys of their own (selects, the scrubber, the
// token stream, the heatmap) keep theirs; a focused button or link keeps space (it
// presses it) but not the arrows, so → still steps after clicking "single token".

const OWN_KEYS = "input, textarea, select, [contenteditable], canvas[tabindex], #tokens, dialog";
const OWN_SPACE = "button, a[href], summary";

export function wireKeys({ playback, dialog }) {
  const show = () => { if (!dialog.open) dialog.showModal(); };
  dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const inField = t instanceof Element && t.closest("input, textarea, select, [contenteditable]");
    if (ev.key === "?" && !inField) { ev.preventDefault(); if (dialog.open) dialog.close(); else show(); return; }
    if (t instanceof Element && (t.closest(OWN_KEYS) || (ev.key === " " && t.closest(OWN_SPACE)))) return;
    switch (ev.key) {
      case " ": playback.toggle(); break;
      case "ArrowRight": playback.step(1); break;
      case "ArrowLeft": playback.step(-1); break;
      case "Home": playback.seek(0); break;
      case "End": playback.seek(playback.state.nTokens); break;
      case "[": playback.faster(-1); break;
      case "]": playback.faster(1); break;
      case "l": case "L": playback.toLive(); break;
      default: return;
    }
    ev.preventDefault();
  });
  return { show };
}
