// One floating tooltip for all canvases. Lines are set as text, never as HTML.
let el = null;

function tip() {
  if (!el) el = document.getElementById("tooltip");
  return el;
}

export function showTooltip(ev, lines) {
  const t = tip();
  if (!t) return;
  t.textContent = lines.join("\n");
  t.hidden = false;
  // keep it inside the window: flip left/up near the right/bottom edges
  const pad = 14, w = t.offsetWidth, h = t.offsetHeight;
  const x = ev.clientX + pad + w > window.innerWidth ? ev.clientX - pad - w : ev.clientX + pad;
  const y = ev.clientY + pad + h > window.innerHeight ? ev.clientY - pad - h : ev.clientY + pad;
  t.style.transform = `translate(${Math.max(0, x)}px, ${Math.max(0, y)}px)`;
}

export function hideTooltip() {
  const t = tip();
  if (t) t.hidden = true;
}
