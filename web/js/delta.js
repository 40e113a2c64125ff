// Delta heatmap: per MoE layer and expert, run A's selections per token minus run
// B's (compare.js deltaOf), on the same layer × expert grid as the other views, in
// diverging colours: orange where A selects the expert more, blue where B does,
// grey where they agree, and the dormant colour where neither run selects it.
import { LayerExpertGrid, makePalette } from "./grid.js";
import { showTooltip, hideTooltip } from "./tooltip.js";

export const DELTA_PALETTE = makePalette([
  [0, [22, 27, 38]], [1 / 255, [78, 160, 255]], [0.3, [52, 98, 160]], [0.5, [52, 58, 72]],
  [0.7, [170, 96, 48]], [1, [255, 160, 64]],
]);
const ZERO_LEVEL = 128;

export class DeltaView {
  constructor(canvas, { legend } = {}) {
    this.grid = new LayerExpertGrid(canvas, { palette: DELTA_PALETTE, maxGridCss: 300 });
    this.legend = legend || null;
    this.data = null;            // {model, delta, a, b} (a, b: compare.js figures)
    this.drawn = null;
    canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    canvas.addEventListener("mouseleave", hideTooltip);
  }

  show(model, delta, a, b) {
    this.data = { model, delta, a, b };
    this.drawn = null;
  }

  clear() { this.data = null; }

  // Once per frame: repaint after new data or a resize.
  update() {
    const d = this.data;
    if (!d) return;
    if (this.grid.model !== d.model) { this.grid.setModel(d.model); this.drawn = null; }
    const resized = this.grid.fit();
    if (!resized && this.drawn === d) return;
    const { values, max } = d.delta, levels = new Uint8Array(values.length);
    for (let c = 0; c < values.length; c++) {
      const bothDormant = d.a.counts[c] === 0 && d.b.counts[c] === 0;
      levels[c] = bothDormant ? 0 : Math.max(1, Math.min(255, ZERO_LEVEL + Math.round((127 * values[c]) / (max || 1))));
    }
    this.grid.paintAll(levels);
    this.drawn = d;
    if (this.legend) {
      this.legend.textContent = `−${max.toFixed(3)} (${d.b.name} more) · 0 · +${max.toFixed(3)} (${d.a.name} more) selections per token`;
    }
  }

  hover(ev) {
    const d = this.data, hit = d && this.grid.hitTest(ev.clientX, ev.clientY);
    if (!hit || hit.moeRow === undefined || hit.moeRow < 0 || hit.shared) return hideTooltip();
    const E = d.model.n_expert, c = hit.moeRow * E + hit.expert;
    const rate = (f) => `${f.counts[c]}× of ${f.nTokens} tokens (${(f.counts[c] / (f.nTokens || 1)).toFixed(3)}/token)`;
    const v = d.delta.values[c];
    showTooltip(ev, [`layer ${hit.layer} · expert ${hit.expert}`, `A ${d.a.name}: ${rate(d.a)}`, `B ${d.b.name}: ${rate(d.b)}`,
      `A − B = ${v >= 0 ? "+" : ""}${v.toFixed(3)} per token`]);
  }
}
