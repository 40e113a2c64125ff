// Cumulative heatmap: how often (or with how much gate weight) every expert of every
// MoE layer has been selected up to the playback cursor, over the tokens chosen with
// the page's all / prompt / generated toggle (as the dormant card; figures.js).
//
// Incremental: each frame recolours only the cells of the tokens applied since the
// last frame. The colour scale is log-like over a maximum rounded up to a power of
// two, so it changes O(log n) times per run; only then, on a new run, a resize or a
// mode switch is everything repainted.
import { LayerExpertGrid, makePalette } from "./grid.js";
import { showTooltip, hideTooltip } from "./tooltip.js";
import { tokensWord } from "./figures.js";
import COLORS from "./colors.json" with { type: "json" };

// index 0: never selected (dormant); 1..255: dim violet to pale yellow. The stops are
// colors.json's, which moeviz/preview.py's share image reads too.
export const HEAT_PALETTE = makePalette(COLORS.heat_stops);

// A value's palette index on the log scale up to `scale` (moeviz/preview.py heat_levels):
// 0 for none, else 1 + floor(254 log(1 + v) / log(1 + scale)), at most 255.
export function heatLevel(scale) {
  const inv = 1 / Math.log1p(scale);
  return (v) => (v > 0 ? 1 + Math.min(254, Math.floor(254 * Math.log1p(v) * inv)) : 0);
}

export class HeatmapView {
  constructor(canvas, state, { legend } = {}) {
    this.state = state;
    this.grid = new LayerExpertGrid(canvas, { palette: HEAT_PALETTE, maxGridCss: 430 });
    this.mode = "counts";          // "counts" | "mass"
    this.tokens = "all";           // "all" | "prompt" | "generated"
    this.legend = legend || null;
    this.drawn = { gen: -1, applied: 0, scale: 0, mode: "", tokens: "" };
    this.cells = new Int32Array(0);
    canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    canvas.addEventListener("mouseleave", hideTooltip);
  }

  setMode(mode) { this.mode = mode; }

  setTokens(sel) { this.tokens = sel; }

  values() { return this.mode === "mass" ? this.state.massOf[this.tokens] : this.state.counts[this.tokens]; }

  // The scale's top: the running maximum rounded up to a power of two.
  scaleTop() {
    const max = this.mode === "mass" ? this.state.maxMassOf[this.tokens] : this.state.maxCountOf[this.tokens];
    return max > 0 ? 2 ** Math.ceil(Math.log2(max)) : 1;
  }

  update() {
    const s = this.state;
    if (!s.model) return;
    if (this.grid.model !== s.model) { this.grid.setModel(s.model); this.drawn.gen = -1; }
    const resized = this.grid.fit();
    const scale = this.scaleTop(), d = this.drawn;
    if (!this.levels || this.levels.length !== s.L * s.E) this.levels = new Uint8Array(s.L * s.E);
    const newTokens = s.applied - d.applied;
    // Counts are a function of the cursor alone, so going forward from any earlier
    // drawing (even across a recount) only needs the newer tokens' cells.
    const full = resized || d.gen !== s.gen || d.mode !== this.mode || d.tokens !== this.tokens || d.scale !== scale ||
      newTokens < 0 || newTokens * s.L * s.K > s.L * s.E / 2;
    if (full) {
      this.fillLevels(null, 0, scale);
      this.grid.paintAll(this.levels);
    } else if (newTokens > 0) {
      const n = this.collectCells(d.applied, s.applied);
      this.fillLevels(this.cells, n, scale);
      this.grid.paintCells(this.cells, n, this.levels);
    } else {
      return;
    }
    Object.assign(d, { gen: s.gen, applied: s.applied, scale, mode: this.mode, tokens: this.tokens });
    this.updateLegend(scale);
  }

  // cells routed by tokens [from, to) as MoE-row * E + expert (duplicates harmless)
  collectCells(from, to) {
    const s = this.state, per = s.L * s.K, n = (to - from) * per;
    if (this.cells.length < n) this.cells = new Int32Array(n);
    const { L, E, K, ids } = s, cells = this.cells;
    for (let t = from, i = 0; t < to; t++) {
      let o = t * per;
      for (let l = 0; l < L; l++) for (let k = 0, base = l * E; k < K; k++) cells[i++] = base + ids[o++];
    }
    return n;
  }

  fillLevels(cells, n, scale) {
    const vals = this.values(), lv = this.levels, level = heatLevel(scale);
    // counts are integers up to `scale`: a lookup table replaces a log per cell
    const lut = this.mode === "counts" ? this.countLevels(scale, level) : null;
    if (cells) for (let i = 0; i < n; i++) lv[cells[i]] = lut ? lut[vals[cells[i]]] : level(vals[cells[i]]);
    else if (lut) for (let c = 0; c < vals.length; c++) lv[c] = lut[vals[c]];
    else for (let c = 0; c < vals.length; c++) lv[c] = level(vals[c]);
  }

  countLevels(scale, level) {
    if (!this.lut || this.lut.length !== scale + 1) this.lut = Uint8Array.from({ length: scale + 1 }, (_, v) => level(v));
    return this.lut;
  }

  updateLegend(scale) {
    if (!this.legend) return;
    const top = this.mode === "mass" ? formatMass(scale) : String(scale);
    const over = this.tokens === "all" ? "all tokens" : `${tokensWord(this.tokens)} only`;
    const text = `0 · ${this.mode === "mass" ? "gate weight" : "selections"} (log scale) · ${top} · ${over}`;
    if (this.legend.textContent !== text) this.legend.textContent = text;
  }

  hover(ev) {
    const s = this.state, hit = this.grid.hitTest(ev.clientX, ev.clientY);
    if (!hit) return hideTooltip();
    if (hit.dense) return showTooltip(ev, [`layer ${hit.layer}`, "dense FFN: every token, no routed experts"]);
    if (hit.shared) {
      return showTooltip(ev, [`layer ${hit.layer}`, `${s.model.n_shared_experts} shared expert(s)`,
        `always on: ${s.applied} of ${s.applied} tokens`]);
    }
    const c = hit.moeRow * s.E + hit.expert, n = s.counts[this.tokens][c], of = s.appliedOf[this.tokens];
    showTooltip(ev, [
      `layer ${hit.layer} · expert ${hit.expert}`,
      `selected ${n}× of ${of} ${tokensWord(this.tokens)} (${pct(n, of)})`,
      `prompt ${s.counts.prompt[c]} · generated ${s.counts.generated[c]}`,
      `weight mass ${s.massOf[this.tokens][c].toFixed(3)}`,
      n === 0 ? "dormant so far" : "",
      "click: outline it and show its tokens",
    ].filter(Boolean));
  }
}

function pct(a, b) { return b ? `${((100 * a) / b).toFixed(1)}%` : "–"; }
function formatMass(v) { return v >= 1 ? String(v) : v.toPrecision(2); }
