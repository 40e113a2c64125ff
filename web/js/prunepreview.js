// Prune preview (issue 25): the experts `moeviz prune --keep N --traces RUN` would drop for
// the shown run — per MoE layer the N most selected up to the cursor are kept, ties to the
// lower id (moeviz/prune.py) — outlined over the cumulative heatmap, with the share of the
// run's selections the pruned model keeps. "mask them" puts the dropped experts in the
// what-if mask (whatif.js), so the next live run is the what-if: for gatings that
// renormalize the selected weights, a run of the pruned file routes exactly as that masked run.

import { HeatmapPlacement } from "./whatif.js";

// [[model layer, expert], ...] the prune would drop, and the kept share of the selections
export function pruneDrops(counts, layers, E, keep) {
  const dropped = [];
  let kept = 0, total = 0;
  layers.forEach((layer, l) => {
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) => counts[l * E + b] - counts[l * E + a] || a - b);
    order.forEach((e, i) => {
      total += counts[l * E + e];
      if (i < keep) kept += counts[l * E + e]; else dropped.push([layer, e]);
    });
  });
  dropped.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return { dropped, keptShare: total ? kept / total : null };
}

export class PrunePreview {
  constructor(heatmap, state, whatIf, wrap) {
    Object.assign(this, { grid: heatmap.grid, state, whatIf, wrap, keep: null, on: false, shown: "", result: null });
    const make = (tag, props) => Object.assign(document.createElement(tag), props);
    this.toggle = make("button", { id: "pp-toggle", textContent: "prune preview", title: "outline the experts "
      + "moeviz prune --keep N would drop for this run (the N most selected per layer are kept)" });
    this.toggle.setAttribute("aria-pressed", "false");
    this.input = make("input", { id: "pp-keep", type: "number", min: "1", step: "1" });
    this.input.setAttribute("aria-label", "experts kept per layer");
    this.note = make("span", { id: "pp-note", className: "muted" });
    this.maskButton = make("button", { id: "pp-mask", textContent: "mask them in the next run",
      title: "the dropped experts become the what-if mask: the next run shows the pruned model's routing" });
    const label = make("label", {});
    label.append("keep ", this.input, " per layer");
    this.row = make("div", { className: "prune-preview" });
    this.row.append(this.toggle, " ", label, " ", this.note, " ", this.maskButton);
    wrap.after(this.row);
    this.canvas = make("canvas", { className: "prune-overlay" });
    this.canvas.setAttribute("aria-hidden", "true");
    Object.assign(this.canvas.style, { position: "absolute", pointerEvents: "none" });
    wrap.appendChild(this.canvas);
    this.placement = new HeatmapPlacement(this.grid, wrap);
    this.toggle.addEventListener("click", () => { this.on = !this.on; this.shown = ""; });
    this.input.addEventListener("change", () => { this.keep = Number(this.input.value); this.shown = ""; });
    this.maskButton.addEventListener("click", () => this.maskDropped());
  }

  maskDropped() {
    if (!this.result || !this.state.model) return;
    this.whatIf.mask.clear();
    for (const [layer, e] of this.result.dropped) this.whatIf.mask.add(`${layer}:${e}`);
    this.whatIf.render();
  }

  update() {
    const s = this.state, g = this.grid, m = s.model;
    this.row.hidden = !m;
    if (!m || !g.layout) return;
    const E = m.n_expert, K = s.K || m.n_expert_used;
    if (m !== this.model || !(this.keep >= 1 && this.keep < E)) {      // a new model: keep three quarters
      this.model = m;
      this.keep = Math.max(1, Math.min(E - 1, Math.round(0.75 * E)));
    }
    this.input.max = String(E - 1);
    if (document.activeElement !== this.input) this.input.value = String(this.keep);
    const gc = g.canvas, [left, top, width, height] = this.placement.get(s.gen);
    const key = `${s.gen}|${s.applied}|${this.keep}|${this.on}|${gc.width}x${gc.height}|${left},${top},${width},${height}`;
    if (key === this.shown) return;
    this.shown = key;
    this.toggle.setAttribute("aria-pressed", String(this.on));
    this.result = { keep: this.keep, ...pruneDrops(s.counts.all, m.moe_layers, E, this.keep) };
    const per = E - this.keep;
    this.note.textContent = `${per} of ${E} dropped per layer` + (this.result.keptShare === null ? ""
      : `, ${(100 * this.result.keptShare).toFixed(1)}% of this run's selections kept`)
      + (this.keep < K ? ` (top-${K} becomes top-${this.keep})` : "");
    this.maskButton.disabled = s.nTokens === 0;
    const c = this.canvas;
    c.width = gc.width;
    c.height = gc.height;
    Object.assign(c.style, { left: `${left}px`, top: `${top}px`, width: `${width}px`, height: `${height}px` });
    const ctx = c.getContext("2d"), dpr = g.layout.dpr;
    ctx.clearRect(0, 0, c.width, c.height);
    if (!this.on) return;
    ctx.strokeStyle = "#ffd166";
    ctx.lineWidth = Math.max(1, dpr);
    for (const [layer, e] of this.result.dropped) {
      const r = g.cellRect(m.moe_layers.indexOf(layer), e);
      ctx.strokeRect(r.x * dpr + 1.5, r.y * dpr + 1.5, r.w * dpr - 3, r.h * dpr - 3);
    }
  }

  figures() {
    return this.result ? { on: this.on, keep: this.result.keep, dropped: this.result.dropped,
      keptShare: this.result.keptShare } : null;
  }
}
