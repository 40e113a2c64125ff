// One floating tooltip for all canvases. Lines are set as text, never as HTML.
// It never covers the expert card (a chosen heatmap cell's, web/js/cellinfo.js): it goes
// to whichever side of the pointer is free, or stays hidden when none is (the card says
// more). Touch screens have no hover: a tap opens the card, and no tooltip shows.
let el = null;
// read when needed, not at import: node's tests import the views without a window
const touchOnly = () => typeof window !== "undefined" && !!window.matchMedia && window.matchMedia("(hover: none)").matches;

function tip() {
  if (!el) el = document.getElementById("tooltip");
  return el;
}

const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

export function showTooltip(ev, lines) {
  const t = tip();
  if (!t) return;
  if (touchOnly()) { t.hidden = true; return; }
  t.textContent = lines.join("\n");
  t.hidden = false;
  const pad = 14, w = t.offsetWidth, h = t.offsetHeight, W = window.innerWidth, H = window.innerHeight;
  const card = document.querySelector(".cell-info:not([hidden])");
  const avoid = card ? card.getBoundingClientRect() : null;
  const right = ev.clientX + pad, left = ev.clientX - pad - w, below = ev.clientY + pad, above = ev.clientY - pad - h;
  // the usual place first (right of and below the pointer), then the other corners
  const spots = [[right, below], [left, below], [right, above], [left, above]]
    .map(([x, y]) => [Math.max(0, Math.min(x, W - w)), Math.max(0, Math.min(y, H - h))]);
  const free = spots.find(([x, y]) => !avoid || !overlaps({ left: x, top: y, right: x + w, bottom: y + h }, avoid));
  if (!free) { t.hidden = true; return; }
  t.style.transform = `translate(${free[0]}px, ${free[1]}px)`;
}

export function hideTooltip() {
  const t = tip();
  if (t) t.hidden = true;
}

// The expert card moved or opened: a tooltip it would now overlap goes (the next hover
// places it again, clear of the card).
export function keepClearOf(elem) {
  const t = tip();
  if (t && !t.hidden && overlaps(t.getBoundingClientRect(), elem.getBoundingClientRect())) t.hidden = true;
}
