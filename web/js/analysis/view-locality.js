// Locality: consecutive-token repetition per layer, co-activation within the chosen
// layer, and top-1 transitions from it to the next MoE layer.
import { fitCanvas, matrix, COLORS, el, table, fmt } from "./draw.js";
import { showTooltip, hideTooltip } from "../tooltip.js";

export class LocalityView {
  constructor(root) {
    this.summary = el("p", { className: "an-line muted" });
    this.box = el("div", { className: "an-scroll", tabIndex: 0 });
    this.matTitle = el("p", { className: "an-line" });
    this.canvas = el("canvas", { className: "an-canvas" });
    this.miBox = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(this.summary, this.box, this.matTitle, this.canvas,
      el("p", { className: "legend-line" }, el("span", {}, el("span", { className: "sw an-sw-share" }), "share 0 → 1"),
        el("span", {}, el("span", { className: "sw dormant" }), "expert never selected / never top-1 (no row)"),
        el("span", {}, el("span", { className: "sw an-sw-diag" }), "diagonal (i with itself)")),
      this.miBox);
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", hideTooltip);
  }

  render(fig, width) {
    this.fig = fig;
    const loc = fig.locality, layers = fig.layers, E = fig.n_expert;
    if (!loc.pairs) {
      this.summary.textContent = `Locality: ${loc.note}.`;
      this.box.replaceChildren();
    } else {
      this.summary.textContent = `Consecutive tokens (${loc.pairs} pairs): same top-1 expert, and share of the top-k `
        + `set kept. Uniform random routing: ${fmt(loc.top1_repeat_uniform)} and ${fmt(loc.topk_overlap_uniform)}; `
        + "shuffled = the same routings in random order (keeps the imbalance). Locality is the excess over shuffled.";
      this.box.replaceChildren(table(["layer", "top-1 repeat", "shuffled", "top-k overlap", "shuffled"],
        layers.map((layer, l) => [`L${layer}`, fmt(loc.top1_repeat[l]), fmt(loc.top1_repeat_shuffled[l]),
          fmt(loc.topk_overlap[l]), fmt(loc.topk_overlap_shuffled[l])])));
    }
    const co = fig.coactivation, tr = fig.transitions;
    this.matTitle.textContent = `Layer ${co.layer}: co-activation N(i,j)/N(i) (left; uniform random ${fmt(co.uniform)})`
      + (tr ? ` · top-1 transitions L${tr.layer} → L${tr.next_layer}, row shares (right)` : " · last MoE layer: no transitions");
    const gap = 36, size = Math.max(80, Math.min(260, Math.floor((width - gap - 60) / 2)));
    const { ctx } = fitCanvas(this.canvas, width, size + 40);
    const x0 = 30, x1 = x0 + size + gap, y0 = 18;
    matrix(ctx, co.conditional, E, x0, y0, size, { diagonal: false });
    if (tr) matrix(ctx, tr.conditional, E, x1, y0, size);
    ctx.fillStyle = COLORS.muted;
    ctx.textBaseline = "top";
    ctx.textAlign = "left";
    ctx.fillText("expert i (row) → j", x0, 3);
    if (tr) ctx.fillText(`top-1 at L${tr.layer} (row) → L${tr.next_layer}`, x1, 3);
    // expert ids on both axes of each matrix, at round steps far enough apart to read
    matrixTicks(ctx, E, x0, y0, size);
    if (tr) matrixTicks(ctx, E, x1, y0, size);
    this.geom = { x0, x1, y0, size, E };

    const ts = fig.transition_summary;
    this.miBox.replaceChildren(ts.pairs.length ? table(
      ["layers", "MI bits", "shuffled", "predictability", "shuffled", "guess commonest"],
      ts.pairs.map(([a, b], i) => [`L${a}→L${b}`, fmt(ts.mutual_information_bits[i]),
        fmt(ts.mutual_information_shuffled[i]), fmt(ts.predictability[i]), fmt(ts.predictability_shuffled[i]),
        fmt(ts.predictability_baseline[i])])) : el("p", { className: "an-line muted" }, "one MoE layer: no transitions"));
  }

  hover(ev) {
    if (!this.geom) return;
    const { x0, x1, y0, size, E } = this.geom, r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top, cell = size / E;
    const a = Math.floor((y - y0) / cell);
    if (a < 0 || a >= E) return hideTooltip();
    const co = this.fig.coactivation, tr = this.fig.transitions;
    if (x >= x0 && x < x0 + size) {
      const b = Math.floor((x - x0) / cell);
      return showTooltip(ev, [`layer ${co.layer}: experts ${a} and ${b}`, `together on ${co.counts[a * E + b]} tokens`,
        `${fmt(co.conditional[a * E + b])} of expert ${a}'s ${co.counts[a * E + a]} tokens`]);
    }
    if (tr && x >= x1 && x < x1 + size) {
      const b = Math.floor((x - x1) / cell);
      return showTooltip(ev, [`top-1 ${a} at L${tr.layer} → ${b} at L${tr.next_layer}`,
        `${tr.counts[a * E + b]} tokens, ${fmt(tr.conditional[a * E + b])} of row ${a}`]);
    }
    hideTooltip();
  }
}


function matrixTicks(ctx, E, x0, y0, size) {
  const cell = size / E, step = [1, 2, 4, 8, 16, 32, 64, 128].find((s) => s * cell >= 16) || 256;
  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let e = 0; e < E; e += step) ctx.fillText(String(e), x0 - 3, y0 + (e + 0.5) * cell);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let e = 0; e < E; e += step) ctx.fillText(String(e), x0 + (e + 0.5) * cell, y0 + size + 3);
  ctx.textAlign = "left";
  ctx.fillText(`(${E} × ${E})`, x0, y0 + size + 16);
}
