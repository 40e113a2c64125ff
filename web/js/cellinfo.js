// A chosen cell of the cumulative heatmap: outlined on the grid, with the expert's
// profile in a card beside it (how often it fired, by prompt and generated tokens, with how much
// gate weight, and the tokens it took), so a click answers where it was made rather
// than two screens down in the analysis panels (which follow the choice too).
//
// Chosen by a click, or from the keyboard: the canvas is focusable; arrow keys move
// the outline, Enter (or space) chooses the outlined cell, Escape closes the card.
// The outline and the card are DOM elements over the canvas, so the grid's pixels
// (which tests read) are never drawn over.
import { quoteToken } from "./special.js";
import { tokensWord } from "./figures.js";
import { keepClearOf } from "./tooltip.js";

const TOP_TOKENS = 6;

export class CellInfo {
  constructor(heatmap, state, { wrap, outline, card, onChoose } = {}) {
    this.heatmap = heatmap;
    this.state = state;
    this.grid = heatmap.grid;
    this.wrap = wrap;
    this.outline = outline;
    this.card = card;
    this.onChoose = onChoose || (() => {});
    this.cell = null;            // {row, expert} chosen
    this.cursor = null;          // {row, expert} outlined from the keyboard
    this.shown = "";
    const canvas = this.grid.canvas;
    canvas.addEventListener("click", (ev) => {
      const hit = this.grid.hitTest(ev.clientX, ev.clientY);
      if (hit && hit.expert !== undefined && hit.moeRow >= 0) this.choose(hit.moeRow, hit.expert);
    });
    canvas.addEventListener("keydown", (ev) => this.key(ev));
    canvas.addEventListener("focus", () => { if (!this.cursor) this.cursor = this.cell || { row: 0, expert: 0 }; this.shown = ""; });
    canvas.addEventListener("blur", () => { this.shown = ""; });
    card.querySelector(".ci-close").addEventListener("click", () => { this.close(); canvas.focus(); });
  }

  choose(row, expert) {
    this.cell = { row, expert };
    this.cursor = { row, expert };
    this.shown = "";
    this.onChoose(row, expert);
  }

  close() { this.cell = null; this.shown = ""; }

  key(ev) {
    const s = this.state;
    if (!s.model) return;
    const c = this.cursor || { row: 0, expert: 0 };
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    if (moves[ev.key]) {
      const [dr, de] = moves[ev.key];
      this.cursor = { row: clamp(c.row + dr, 0, s.L - 1), expert: clamp(c.expert + de, 0, s.E - 1) };
      this.shown = "";
    } else if (ev.key === "Enter" || ev.key === " ") {
      this.choose(c.row, c.expert);
    } else if (ev.key === "Escape") {
      this.close();
    } else {
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();          // the page's own keys (space: play, arrows: step) stay out
  }

  update(now = performance.now()) {
    const s = this.state;
    if (!s.model || !this.grid.layout) return;
    if (this.cell && (this.cell.row >= s.L || this.cell.expert >= s.E)) this.cell = null;
    const focused = document.activeElement === this.grid.canvas;
    const at = focused ? this.cursor : this.cell;
    const base = `${s.gen}|${this.heatmap.tokens}|${this.grid.layout.key}|${at && at.row},${at && at.expert}|` +
      `${this.cell && this.cell.row},${this.cell && this.cell.expert}|${focused}`;
    const key = `${base}|${s.applied}`;
    if (key === this.shown) return;
    // while playback moves the cursor, the card's counts (a pass over the tokens) follow it
    // at most 4 times a second; any other change is shown at once
    if (this.shown.startsWith(`${base}|`) && now - (this.renderedAt || 0) < 250) return;
    this.shown = key;
    this.renderedAt = now;
    this.placeOutline(at, focused && !(this.cell && at && this.cell.row === at.row && this.cell.expert === at.expert));
    this.renderCard();
  }

  placeOutline(at, cursorOnly) {
    const o = this.outline;
    if (!at) { o.hidden = true; return; }
    const r = this.grid.cellRect(at.row, at.expert), pad = 2;
    o.hidden = false;
    o.classList.toggle("cursor", cursorOnly);
    Object.assign(o.style, { left: `${r.x - pad}px`, top: `${r.y - pad}px`, width: `${r.w + 2 * pad}px`, height: `${r.h + 2 * pad}px` });
  }

  renderCard() {
    const card = this.card, s = this.state, c = this.cell;
    if (!c) { card.hidden = true; return; }
    const layer = s.model.moe_layers[c.row], cell = c.row * s.E + c.expert, sel = this.heatmap.tokens;
    const n = s.counts[sel][cell], of = s.appliedOf[sel];
    const body = card.querySelector(".ci-body");
    const lines = [
      ["b", `Layer ${layer} · expert ${c.expert}`],
      ["p", of ? `selected by ${n} of ${of} ${tokensWord(sel)} (${((100 * n) / of).toFixed(1)}%)`
        : "no tokens yet"],
      ["p", `prompt ${s.counts.prompt[cell]} · generated ${s.counts.generated[cell]} · gate weight ${s.massOf[sel][cell].toFixed(2)}`],
    ];
    const top = topTokens(s, c.row, c.expert, sel);
    body.replaceChildren(...lines.map(([tag, text]) => { const e = document.createElement(tag); e.textContent = text; return e; }));
    if (n === 0) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "dormant so far: no token chose it";
      body.appendChild(p);
    } else {
      const ul = document.createElement("ul");
      for (const t of top) {
        const li = document.createElement("li");
        li.textContent = `${quoteToken(t.text)} ×${t.count}`;
        ul.appendChild(li);
      }
      body.appendChild(ul);
    }
    card.dataset.layer = String(layer);
    card.dataset.expert = String(c.expert);
    card.hidden = false;
    // beside the cell: right of it when there is room, else left, else below
    const r = this.grid.cellRect(c.row, c.expert), W = this.wrap.clientWidth, w = card.offsetWidth, gap = 10;
    let x = r.x + r.w + gap, y = Math.max(0, r.y - 8);
    if (x + w > W) x = r.x - gap - w;
    if (x < 0) { x = Math.max(0, Math.min(W - w, r.x)); y = r.y + r.h + gap; }
    card.style.transform = `translate(${Math.round(x)}px, ${Math.round(y)}px)`;
    keepClearOf(card);
  }

  get chosen() { return this.cell ? { layer: this.state.model.moe_layers[this.cell.row], expert: this.cell.expert } : null; }
}

// The tokens (by text) most often routed to (row, expert) among the applied ones.
function topTokens(s, row, expert, sel) {
  const { L, K } = s, byText = new Map();
  for (let t = 0; t < s.applied; t++) {
    const tok = s.tokens[t];
    if (sel !== "all" && tok.prompt !== (sel === "prompt")) continue;
    const o = (t * L + row) * K;
    for (let k = 0; k < K; k++) {
      if (s.ids[o + k] === expert) { byText.set(tok.text, (byText.get(tok.text) || 0) + 1); break; }
    }
  }
  return [...byText].map(([text, count]) => ({ text, count })).sort((a, b) => b.count - a.count).slice(0, TOP_TOKENS);
}

const clamp = (v, a, b) => Math.max(a, Math.min(b, v));
