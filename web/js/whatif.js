// What-if runs (issue 15, docs/protocol.md "Interventions"): the live page asks the
// server for another top-k (a slider), masked experts (clicked on the cumulative
// heatmap in mask mode) and next-token candidates; a run's own top-k and mask come
// back in its settings (tracecheck.js routingK, maskOf).
//
//   Candidates      a run's next-token candidates, flat [n_tokens * N] (RunState.candidates)
//   WhatIfControls  the controls in the Generate card and the fields they add to `generate`
//   MaskOverlay     the masked cells drawn over the heatmap; clicks there in mask mode
import { quoteToken } from "./special.js";

export { routingK } from "./tracecheck.js";

export const CANDIDATES_ASKED = 10;     // N the page asks for

export function maskOf(settings) {
  return settings && Array.isArray(settings.mask) ? settings.mask : [];
}

// A run's candidates: at position t the N most probable next tokens (the prediction
// for token t + 1) and their probabilities; texts: {id: text}.
export class Candidates {
  constructor() {
    this.N = 0;
    this.n = 0;
    this.ids = new Int32Array(0);
    this.probs = new Float32Array(0);
    this.texts = {};
  }

  get present() { return this.n > 0; }

  // a live message's candidates: rows [n][N] (prompt) or one row [N] (token)
  append(c) {
    if (!c || !Array.isArray(c.ids)) return;
    const rows = Array.isArray(c.ids[0]) ? c.ids : [c.ids], probs = Array.isArray(c.ids[0]) ? c.probs : [c.probs];
    if (!rows.length) return;
    const N = rows[0].length;
    if (!this.N) this.N = N;
    if (N !== this.N) return;
    const need = (this.n + rows.length) * N;
    if (need > this.ids.length) {
      const cap = Math.max(need, 2 * this.ids.length, 64 * N);
      const ids = new Int32Array(cap); ids.set(this.ids); this.ids = ids;
      const p = new Float32Array(cap); p.set(this.probs); this.probs = p;
    }
    rows.forEach((row, i) => { this.ids.set(row, (this.n + i) * N); this.probs.set(probs[i], (this.n + i) * N); });
    this.n += rows.length;
    Object.assign(this.texts, c.texts || {});
  }

  // the page's in-memory trace's candidates (tracecheck.js)
  load(c, n) {
    if (!c) return;
    Object.assign(this, { N: c.N, n, ids: c.ids, probs: c.probs, texts: c.texts || {} });
  }

  // [{id, p, text}] at position t, most probable first, or null
  of(t) {
    if (t < 0 || t >= this.n) return null;
    const out = [];
    for (let j = 0, o = t * this.N; j < this.N; j++, o++) {
      const id = this.ids[o];
      out.push({ id, p: this.probs[o], text: this.texts[id] ?? this.texts[String(id)] ?? null });
    }
    return out;
  }

  // the trace form ({ids: [n][N], probs, texts}) for a saved trace
  toJSON(round = (v) => v) {
    const ids = [], probs = [];
    for (let t = 0; t < this.n; t++) {
      ids.push(Array.from(this.ids.subarray(t * this.N, (t + 1) * this.N)));
      probs.push(Array.from(this.probs.subarray(t * this.N, (t + 1) * this.N), round));
    }
    return { texts: this.texts, ids, probs };
  }
}

// The Generate card's what-if controls. fields() is what a `generate` adds; the mask
// is a set of "layer:expert" keys (model layer indices, as the protocol has them).
export class WhatIfControls {
  constructor(root, { onChange } = {}) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.els = { k: $("wi-k"), kValue: $("wi-k-value"), cands: $("wi-candidates"), mode: $("wi-mask-mode"),
      count: $("wi-mask-count"), clear: $("wi-mask-clear") };
    this.onChange = onChange || (() => {});
    this.model = null;
    this.mask = new Set();
    this.maskMode = false;
    this.touched = false;          // the slider moved: send its value (else the server's default)
    const e = this.els;
    e.k.addEventListener("input", () => { this.touched = true; this.render(); });
    e.mode.addEventListener("click", () => { this.maskMode = !this.maskMode; this.render(); });
    e.clear.addEventListener("click", () => { this.mask.clear(); this.render(); });
  }

  setModel(model) {
    if (!model || model === this.model) return;
    const same = this.model && this.model.n_expert === model.n_expert &&
      JSON.stringify(this.model.moe_layers) === JSON.stringify(model.moe_layers);
    this.model = model;
    if (!same) { this.mask.clear(); this.touched = false; }
    this.els.k.min = "1";
    this.els.k.max = String(model.n_expert);
    if (!this.touched) this.els.k.value = String(model.n_expert_used);
    this.render();
  }

  // a run started with this top-k (the server's default, say): the slider shows it
  // until the reader moves it
  showRunK(k) {
    if (!this.touched && Number.isInteger(k)) { this.els.k.value = String(k); this.render(); }
  }

  get k() { return parseInt(this.els.k.value, 10); }

  toggle(layer, expert) {
    const key = `${layer}:${expert}`;
    if (this.mask.has(key)) this.mask.delete(key); else this.mask.add(key);
    this.render();
  }

  isMasked(layer, expert) { return this.mask.has(`${layer}:${expert}`); }

  maskPairs() {
    return [...this.mask].map((s) => s.split(":").map(Number)).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  }

  fields() {
    const out = {};
    if (this.touched && Number.isInteger(this.k)) out.experts_per_token = this.k;
    if (this.mask.size) out.mask = this.maskPairs();
    if (this.els.cands.checked) out.candidates = CANDIDATES_ASKED;
    return out;
  }

  render() {
    const e = this.els, m = this.model;
    e.kValue.textContent = m ? `${e.k.value} of ${m.n_expert}${this.k === m.n_expert_used ? " (the model's)" : ` (model: ${m.n_expert_used})`}` : "";
    e.mode.setAttribute("aria-pressed", String(this.maskMode));
    e.mode.textContent = this.maskMode ? "masking: click heatmap cells" : "mask experts";
    e.count.textContent = this.mask.size ? `${this.mask.size} masked` : "none masked";
    e.clear.disabled = this.mask.size === 0;
    document.body.classList.toggle("masking", this.maskMode);
    this.onChange();
  }

  state() {
    return { experts_per_token: this.k, touched: this.touched, mask: this.maskPairs(), maskMode: this.maskMode,
      candidates: this.els.cands.checked ? CANDIDATES_ASKED : 0, fields: this.fields() };
  }
}

// Over the cumulative heatmap: the cells the next run will mask (a red cross) and the
// cells the shown run masked (a grey cross). In mask mode a click on a cell toggles it
// instead of choosing it (the capture listener on the wrapper runs first).
// Where the heatmap's canvas sits in its wrapper, for the overlays drawn over it (the mask
// crosses, the prune preview): read only after a resize or once per run. Reading offsetLeft
// every frame, after the other views changed the page, forced a layout per frame (the
// largest script cost while a long prompt plays in).
export class HeatmapPlacement {
  constructor(grid, wrap) {
    this.grid = grid;
    this.box = null;
    this.gen = null;
    this.observed = typeof ResizeObserver !== "undefined";
    if (this.observed) {
      const observer = new ResizeObserver(() => { this.box = null; });
      observer.observe(wrap);
      observer.observe(grid.canvas);
    }
  }

  // [left, top, width, height] in CSS pixels; `gen` is the state's run generation
  get(gen) {
    if (!this.box || !this.observed || this.gen !== gen) {
      this.gen = gen;
      const gc = this.grid.canvas;
      this.box = [gc.offsetLeft, gc.offsetTop, gc.clientWidth, gc.clientHeight];
    }
    return this.box;
  }
}

export class MaskOverlay {
  constructor(heatmap, state, controls, wrap) {
    this.grid = heatmap.grid;
    this.state = state;
    this.controls = controls;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "mask-overlay";
    this.canvas.setAttribute("aria-hidden", "true");
    wrap.appendChild(this.canvas);
    this.shown = "";
    this.placement = new HeatmapPlacement(this.grid, wrap);
    wrap.addEventListener("click", (ev) => {
      if (!controls.maskMode || ev.target !== this.grid.canvas) return;
      const hit = this.grid.hitTest(ev.clientX, ev.clientY);
      ev.stopPropagation();
      if (hit && hit.expert !== undefined && hit.moeRow >= 0) controls.toggle(this.state.model.moe_layers[hit.moeRow], hit.expert);
    }, true);
  }

  update() {
    const s = this.state, g = this.grid, c = this.canvas;
    if (!s.model || !g.layout) return;
    const runMask = maskOf(s.run && s.run.settings);
    const [left, top, width, height] = this.placement.get(s.gen);
    const key = `${g.canvas.width}x${g.canvas.height}|${left},${top},${width},${height}|${[...this.controls.mask]}|` +
      `${JSON.stringify(runMask)}|${s.gen}`;
    if (key === this.shown) return;
    this.shown = key;
    c.width = g.canvas.width;
    c.height = g.canvas.height;
    Object.assign(c.style, { left: `${left}px`, top: `${top}px`, width: `${width}px`, height: `${height}px` });
    const ctx = c.getContext("2d"), dpr = g.layout.dpr;
    ctx.clearRect(0, 0, c.width, c.height);
    const cross = (layer, expert, color) => {
      const row = s.model.moe_layers.indexOf(layer);
      if (row < 0 || expert >= s.E) return;
      const r = g.cellRect(row, expert);
      const x0 = r.x * dpr + 1, y0 = r.y * dpr + 1, x1 = (r.x + r.w) * dpr - 2, y1 = (r.y + r.h) * dpr - 2;
      ctx.strokeStyle = color;
      ctx.lineWidth = Math.max(1, dpr);
      ctx.beginPath();
      ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.moveTo(x1, y0); ctx.lineTo(x0, y1);
      ctx.stroke();
    };
    for (const [layer, e] of runMask) cross(layer, e, "rgba(170, 180, 200, 0.8)");
    for (const [layer, e] of this.controls.maskPairs()) cross(layer, e, "#ff5a5a");
  }
}

// The current token's next-token candidates (the run must have recorded them): the
// token the panel shows (pinned, else the cursor's), and the N tokens the model found
// most probable after it, with the token that actually came next marked.
export class CandidatesView {
  constructor(root, state, { pinned } = {}) {
    this.root = root;
    this.state = state;
    this.pinnedOf = pinned || (() => null);
    this.title = root.querySelector("#cand-title");
    this.list = root.querySelector("#cand-list");
    this.shown = "";
  }

  current() {
    const s = this.state, pin = this.pinnedOf();
    return pin !== null && pin >= 0 && pin < s.nTokens ? pin : s.applied - 1;
  }

  update() {
    const s = this.state, c = s.candidates;
    const has = !!(c && c.present);
    const t = has ? this.current() : -1;
    const key = `${s.gen}|${has}|${t}|${has ? c.n : 0}`;
    if (key === this.shown) return;
    this.shown = key;
    this.root.hidden = !has;
    if (!has) return;
    const rows = c.of(t);
    if (!rows) { this.list.replaceChildren(); this.title.textContent = ""; return; }
    const next = t + 1 < s.nTokens ? s.tokens[t + 1].id : null;
    this.title.textContent = `after token #${t} ${quote(s.tokens[t].text)}` +
      (next !== null ? ` · next was ${quote(s.tokens[t + 1].text)}` : "");
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const li = document.createElement("li");
      li.dataset.id = String(r.id);
      if (r.id === next) li.className = "actual";
      const bar = document.createElement("span");
      bar.className = "cand-bar";
      bar.style.width = `${Math.max(1, Math.round(100 * r.p))}%`;
      const text = document.createElement("span");
      text.className = "cand-text";
      text.textContent = r.text === null ? `#${r.id}` : quote(r.text);
      const p = document.createElement("span");
      p.className = "cand-p";
      p.textContent = `${(100 * r.p).toFixed(r.p >= 0.1 ? 1 : 2)}%`;
      li.append(bar, text, p);
      frag.appendChild(li);
    }
    this.list.replaceChildren(frag);
  }

  figures() {
    const s = this.state, c = s.candidates;
    if (!c || !c.present) return null;
    const t = this.current();
    return { t, candidates: c.of(t) };
  }
}

const quote = (text) => quoteToken(String(text));
