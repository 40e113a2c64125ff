// Router confidence (when the run captured router probabilities) and the expert cache
// curve (LRU against the static hottest set, for C = 1..E).
import { fitCanvas, axes, line, niceTicks, COLORS, el, table, fmt, pct } from "./draw.js";
import { showTooltip, hideTooltip } from "../tooltip.js";
import { PolicyTable } from "./policies.js";

export class ConfidenceView {
  constructor(root) {
    this.kind = el("p", { className: "an-line" });
    this.box = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(this.kind, this.box);
  }

  render(fig) {
    const c = fig.confidence;
    if (!c) {
      this.kind.textContent = `Router confidence: not captured — ${fig.confidence_note}.`;
      this.kind.classList.add("an-missing");
      this.box.replaceChildren();
      return;
    }
    this.kind.classList.remove("an-missing");
    const what = c.scores_are_probabilities ? `${c.gating} probabilities`
      : c.gating ? `${c.gating} scores (independent per expert, not probabilities)` : "router scores, gating unknown";
    this.kind.textContent = `Router confidence from ${what}, per MoE layer over ${fig.tokens} tokens: mean `
      + "[10th / 50th / 90th percentile]. Margin = k-th − (k+1)-th largest score; entropy of the normalized scores "
      + `/ ln E (1 = cannot tell experts apart).${c.note ? ` ${c.note}.` : ""}`;
    const cell = (s, l) => (s ? `${fmt(s.mean[l])} [${fmt(s.p10[l])} / ${fmt(s.p50[l])} / ${fmt(s.p90[l])}]` : "n/a");
    const rows = fig.layers.map((layer, l) => [`L${layer}`, cell(c.top1, l), cell(c.margin, l), cell(c.entropy, l)]);
    rows.push(["all", fmt(c.top1.overall_mean), c.margin ? fmt(c.margin.overall_mean) : "n/a", fmt(c.entropy.overall_mean)]);
    this.box.replaceChildren(table(["layer", "top-1 score", "margin k / k+1", "entropy"], rows));
  }
}

export class CacheView {
  constructor(root, ui) {
    this.ui = ui;
    this.scope = el("span", { className: "seg", role: "group", ariaLabel: "cache scope" });
    for (const [v, label] of [["layer", "chosen layer"], ["all", "all layers"]]) {
      const b = el("button", { dataset: { cacheScope: v } }, label);
      b.addEventListener("click", () => ui.setCacheScope(v));
      this.scope.append(b);
    }
    this.summary = el("p", { className: "an-line" });
    this.canvas = el("canvas", { className: "an-canvas" });
    this.box = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(el("p", { className: "an-line" }, this.scope), this.summary, this.canvas,
      el("p", { className: "legend-line" }, el("span", {}, el("span", { className: "sw an-sw-obs" }), "LRU cache"),
        el("span", {}, el("span", { className: "sw an-sw-layer" }), "static hottest C experts (hindsight)"),
        el("span", {}, el("span", { className: "sw an-sw-base" }), "ceiling: 1 − compulsory misses")),
      this.box);
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", hideTooltip);
    this.policies = new PolicyTable(root, ui.selection);
  }

  render(fig, width) {
    this.policies.render(fig);
    const c = fig.cache, E = fig.n_expert, K = fig.k, all = this.ui.cacheScope === "all", row = fig.row;
    for (const b of this.scope.children) b.setAttribute("aria-pressed", String(b.dataset.cacheScope === this.ui.cacheScope));
    const lru = all ? c.lru_overall : c.lru[row], stat = all ? c.static_overall : c.static[row];
    const h = c.stack_distance_histogram, L = fig.layers.length;
    const first = all ? h.reduce((s, r) => s + r[E], 0) : h[row][E], uses = fig.tokens * K * (all ? L : 1);
    const scope = all ? "all MoE layers (one cache of C experts per layer)" : `layer ${fig.layers[row]}`;
    this.summary.textContent = `Hit rate of a cache of C experts per layer, ${scope}, over ${fig.tokens} tokens: `
      + `${uses} expert uses, ${first} first uses (compulsory misses, ${pct(first / uses)}).`;
    this.series = { lru, stat, E };
    const { ctx, w, h: ch } = fitCanvas(this.canvas, width, 190);
    const caps = c.capacities;
    const { sx, sy, area } = axes(ctx, w, ch, { x: { min: 1, max: Math.max(2, E) }, y: { min: 0, max: 1 },
      xTicks: [1, ...niceTicks(E, 6).filter((v) => v > 1)],
      yTicks: [0, 0.25, 0.5, 0.75, 1], fmtY: (v) => `${Math.round(v * 100)}%`, xLabel: "experts cached per layer C" });
    this.geom = { area, sx };
    const ceil = 1 - first / uses;
    line(ctx, sx, sy, [1, E], [ceil, ceil], { color: COLORS.baseline, dash: [5, 4], width: 1 });
    line(ctx, sx, sy, caps, stat, { color: COLORS.accent2, width: 1.5 });
    line(ctx, sx, sy, caps, lru, { color: COLORS.accent, width: 2, dots: E <= 32 });
    const kx = Math.round(sx(K)) + 0.5;
    ctx.strokeStyle = "#3a4658"; ctx.setLineDash([2, 3]);
    ctx.beginPath(); ctx.moveTo(kx, area.y0); ctx.lineTo(kx, area.y1); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = COLORS.muted; ctx.textAlign = "left"; ctx.textBaseline = "bottom";
    ctx.fillText(`C = k = ${K}`, kx + 3, area.y1 - 3);
    const shown = [...new Set([K, 2 * K, 4 * K, 8 * K, Math.floor(E / 2), E])].filter((x) => x >= 1 && x <= E).sort((a, b) => a - b);
    this.box.replaceChildren(table(["C", ...shown.map(String)], [
      ["LRU", ...shown.map((x) => pct(lru[x - 1]))], ["hottest", ...shown.map((x) => pct(stat[x - 1]))]]));
  }

  hover(ev) {
    if (!this.geom || !this.series) return;
    const { area, sx } = this.geom, { lru, stat, E } = this.series, r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left;
    if (x < area.x0 - 4 || x > area.x1 + 4) return hideTooltip();
    let best = 1;
    for (let c = 1; c <= E; c++) if (Math.abs(sx(c) - x) < Math.abs(sx(best) - x)) best = c;
    showTooltip(ev, [`C = ${best} expert${best === 1 ? "" : "s"} cached`, `LRU ${pct(lru[best - 1])}`,
      `hottest ${best}: ${pct(stat[best - 1])}`]);
  }
}
