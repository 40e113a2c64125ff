// Utilization and balance (one layer's histogram, figures per layer) and the dormant /
// saturation curve.
import { fitCanvas, axes, line, niceTicks, logTicks, COLORS, HEAT_PALETTE, el, table, fmt, pct } from "./draw.js";
import { showTooltip, hideTooltip } from "../tooltip.js";

export class BalanceView {
  constructor(root, ui) {
    this.ui = ui;
    this.title = el("p", { className: "an-line" });
    this.canvas = el("canvas", { className: "an-canvas" });
    this.tableBox = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(this.title, this.canvas,
      el("p", { className: "an-line muted" }, "Per MoE layer (click a row to choose the layer). Even routing: cv 0, "
        + "entropy 1, maxvio 0, jain 1, gini 0; cv of uniform random routing of as many tokens in brackets."),
      this.tableBox);
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", hideTooltip);
  }

  render(fig, width) {
    this.fig = fig;
    const { row, layers, n_expert: E, k: K, tokens: n } = fig;
    const counts = fig.utilization.counts.subarray(row * E, (row + 1) * E);
    const dormant = fig.dormant.count[row];
    this.title.textContent = `Layer ${layers[row]}: selections per expert over ${n} token${n === 1 ? "" : "s"} `
      + `(${n * K} assignments, mean ${fmt((n * K) / E, 1)} per expert; ${dormant} dormant)`;
    this.drawHistogram(counts, E, n * K / E, width);
    const b = fig.balance, d = fig.dormant;
    const head = ["layer", "cv (random)", "entropy", "maxvio", "jain", "gini", `top ${b.top_share_experts} share`, "dormant"];
    const rows = layers.map((layer, l) => {
      const tr = el("tr", { dataset: { layer: String(layer) }, className: l === row ? "sel" : "" },
        el("td", {}, `L${layer}`), el("td", {}, `${fmt(b.cv[l], 2)} (${fmt(b.cv_random[l], 2)})`),
        el("td", {}, fmt(b.normalized_entropy[l])), el("td", {}, fmt(b.max_violation[l], 2)),
        el("td", {}, fmt(b.jain_index[l])), el("td", {}, fmt(b.gini[l])), el("td", {}, pct(b.top_share[l])),
        el("td", {}, `${d.count[l]}/${E}`));
      tr.addEventListener("click", () => this.ui.selectRow(l));
      return tr;
    });
    this.tableBox.replaceChildren(table(head, rows, { className: "an-table clickable" }));
  }

  drawHistogram(counts, E, mean, width) {
    const { ctx, w, h } = fitCanvas(this.canvas, width, 150);
    let max = 0;
    for (const c of counts) if (c > max) max = c;
    const top = Math.max(1, max, Math.ceil(mean));
    const { area, sy } = axes(ctx, w, h, { x: { min: 0, max: E }, y: { min: 0, max: top }, yTicks: niceTicks(top, 3),
      xLabel: "expert", m: { left: 40, right: 10, top: 8, bottom: 28 } });
    const bw = (area.x1 - area.x0) / E;
    this.geom = { area, bw, counts, E };
    for (let e = 0; e < E; e++) {
      const x = area.x0 + e * bw, c = counts[e];
      if (c === 0) {            // dormant: a mark on the axis
        ctx.fillStyle = "#ff7b72";
        ctx.fillRect(x + bw * 0.2, area.y1 - 2, Math.max(1, bw * 0.6), 2);
        continue;
      }
      const level = 1 + Math.min(254, Math.floor((254 * Math.log1p(c)) / Math.log1p(top)));
      ctx.fillStyle = HEAT_PALETTE.css[level];
      const y = sy(c);
      ctx.fillRect(x + (bw > 4 ? 0.5 : 0), y, Math.max(1, bw - (bw > 4 ? 1 : 0)), area.y1 - y);
    }
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = [1, 2, 4, 8, 16, 32, 64].find((s) => s * bw >= 28) || 128;
    for (let e = 0; e < E; e += step) ctx.fillText(String(e), area.x0 + (e + 0.5) * bw, area.y1 + 4);
    const ym = Math.round(sy(mean)) + 0.5;
    ctx.strokeStyle = COLORS.accent2; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(area.x0, ym); ctx.lineTo(area.x1, ym); ctx.stroke(); ctx.setLineDash([]);
  }

  hover(ev) {
    if (!this.geom) return;
    const { area, bw, counts, E } = this.geom, r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, e = Math.floor((x - area.x0) / bw);
    if (e < 0 || e >= E) return hideTooltip();
    const n = this.fig.tokens;
    showTooltip(ev, [`layer ${this.fig.layers[this.fig.row]} · expert ${e}`,
      `selected by ${counts[e]} of ${n} tokens (${pct(counts[e] / n)})`, counts[e] ? "" : "dormant"].filter(Boolean));
  }
}

export class SaturationView {
  constructor(root) {
    this.summary = el("p", { className: "an-line" });
    this.canvas = el("canvas", { className: "an-canvas" });
    root.append(this.summary, this.canvas, el("p", { className: "legend-line" },
      el("span", {}, el("span", { className: "sw an-sw-obs" }), "dormant, all layers"),
      el("span", {}, el("span", { className: "sw an-sw-layer" }), "dormant, chosen layer"),
      el("span", {}, el("span", { className: "sw an-sw-base" }), "uniform random routing (1 − k/E)^t")));
  }

  render(fig, width) {
    const s = fig.saturation, d = fig.dormant, { n_expert: E, k: K, layers, row, tokens: n } = fig;
    this.summary.textContent = `After ${n} token${n === 1 ? "" : "s"}: ${d.total} of ${layers.length * E} `
      + `(layer, expert) pairs dormant (${pct(d.total_fraction)}); uniform random top-${K} of ${E} routing would `
      + `leave ${pct(d.uniform_expected_fraction, 4)}.`;
    const { ctx, w, h } = fitCanvas(this.canvas, width, 190);
    const { sx, sy } = axes(ctx, w, h, { x: { min: 1, max: Math.max(2, n), log: true }, y: { min: 0, max: 1 },
      xTicks: logTicks(Math.max(2, n)), yTicks: [0, 0.25, 0.5, 0.75, 1], fmtY: (v) => `${Math.round(v * 100)}%`,
      xLabel: "tokens seen t (log scale)" });
    line(ctx, sx, sy, s.tokens, s.uniform_expected, { color: COLORS.baseline, dash: [5, 4] });
    if (s.per_layer) line(ctx, sx, sy, s.tokens, s.per_layer[row], { color: COLORS.accent2, width: 1 });
    line(ctx, sx, sy, s.tokens, s.dormant_fraction, { color: COLORS.accent, width: 2, dots: s.tokens.length < 40 });
    ctx.fillStyle = COLORS.accent2;
    ctx.textAlign = "right";
    ctx.textBaseline = "top";
    ctx.fillText(`layer ${layers[row]}`, w - 12, 10);
  }
}
