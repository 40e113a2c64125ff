// Current-token panel: one token's routing over every MoE layer. Selected experts
// are bright in proportion to their gate weight; when router probabilities were
// captured, the unselected ones glow faintly in proportion to their probability.
//
// Which token: the one hovered in the token stream, else the pinned one, else the
// newest applied token. Without probabilities a token touches only L*K cells, so
// switching tokens repaints the old and new selections; with probabilities every
// cell changes and the grid is repainted in one ImageData pass.
import { LayerExpertGrid, makePalette } from "./grid.js";
import { showTooltip, hideTooltip } from "./tooltip.js";

const FAINT_TOP = 127;          // palette 1..127: probability; 128..255: selected by weight
export const PANEL_PALETTE = makePalette([
  [0, [22, 27, 38]], [1 / 255, [24, 31, 46]], [FAINT_TOP / 255, [64, 92, 150]],
  [128 / 255, [150, 88, 26]], [0.75, [240, 160, 50]], [1, [255, 246, 200]],
]);

export class PanelView {
  constructor(canvas, state, { title, pinned } = {}) {
    this.state = state;
    this.grid = new LayerExpertGrid(canvas, { palette: PANEL_PALETTE, maxGridCss: 360 });
    this.title = title || null;
    this.hovered = null;        // token index under the mouse in the token stream
    this.pinnedOf = pinned || (() => null);   // token index pinned in the token stream
    this.drawn = { gen: -1, t: -1 };
    this.cells = new Int32Array(0);
    canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    canvas.addEventListener("mouseleave", hideTooltip);
  }

  shownToken() {
    const s = this.state;
    const t = this.hovered ?? this.pinnedOf() ?? s.applied - 1;
    return t >= 0 && t < s.nTokens ? t : -1;
  }

  update() {
    const s = this.state;
    if (!s.model) return;
    if (this.grid.model !== s.model) { this.grid.setModel(s.model); this.drawn.gen = -1; }
    const resized = this.grid.fit();
    const t = this.shownToken(), d = this.drawn;
    this.updateTitle(t);            // also when only hovered/pinned changed for the same token
    if (!resized && d.gen === s.gen && d.t === t) return;
    if (!this.levels || this.levels.length !== s.L * s.E) this.levels = new Uint8Array(s.L * s.E);
    const withProbs = (i) => i >= 0 && i < s.nTokens && s.probs[i] !== null;
    if (resized || d.gen !== s.gen || withProbs(t) || withProbs(d.t)) {
      this.levels.fill(0);
      if (t >= 0) this.setLevels(t);
      this.grid.paintAll(this.levels);
    } else {
      // old selection back to empty, then the new one; painted after both are set
      const n0 = d.t >= 0 ? this.collect(d.t, 0) : 0;
      for (let i = 0; i < n0; i++) this.levels[this.cells[i]] = 0;
      const n = t >= 0 ? this.collect(t, n0) : n0;
      if (t >= 0) this.setLevels(t);
      this.grid.paintCells(this.cells, n, this.levels);
    }
    d.gen = s.gen; d.t = t;
  }

  collect(t, at) {
    const s = this.state, per = s.L * s.K;
    if (this.cells.length < at + per) {
      const c = new Int32Array(Math.max(2 * per, at + per)); c.set(this.cells.subarray(0, at)); this.cells = c;
    }
    let o = t * per, i = at;
    for (let l = 0; l < s.L; l++) for (let k = 0, base = l * s.E; k < s.K; k++) this.cells[i++] = base + s.ids[o++];
    return i;
  }

  setLevels(t) {
    const s = this.state, { L, E, K } = s, lv = this.levels, probs = s.probs[t];
    if (probs) {
      for (let l = 0; l < L; l++) {
        let pmax = 0;
        for (let e = l * E; e < (l + 1) * E; e++) if (probs[e] > pmax) pmax = probs[e];
        const f = pmax > 0 ? (FAINT_TOP - 1) / pmax : 0;
        for (let e = l * E; e < (l + 1) * E; e++) lv[e] = probs[e] > 0 ? 1 + Math.round(probs[e] * f) : 0;
      }
    }
    const wmax = s.maxWeightOf(t) || 1;
    let o = t * L * K;
    for (let l = 0; l < L; l++) {
      for (let k = 0; k < K; k++, o++) {
        // never dimmer than 30%: a selected expert must not read as a probable one
        const b = 0.3 + 0.7 * Math.min(1, Math.abs(s.weights[o]) / wmax);
        lv[l * E + s.ids[o]] = 128 + Math.round(127 * b);
      }
    }
  }

  updateTitle(t) {
    if (!this.title) return;
    const s = this.state;
    let text = "no token yet";
    if (t >= 0) {
      const tok = s.tokens[t];
      const how = this.hovered !== null ? "hovered" : this.pinnedOf() !== null ? "pinned" : "newest";
      text = `#${t} ${JSON.stringify(tok.text)} · ${tok.prompt ? "prompt" : "generated"} · ${how}` +
        (s.probs[t] ? " · with router probabilities" : "");
    }
    if (this.title.textContent !== text) this.title.textContent = text;
  }

  hover(ev) {
    const s = this.state, hit = this.grid.hitTest(ev.clientX, ev.clientY), t = this.shownToken();
    if (!hit) return hideTooltip();
    if (hit.dense) return showTooltip(ev, [`layer ${hit.layer}`, "dense FFN: runs for every token, no routing"]);
    if (hit.shared) return showTooltip(ev, [`layer ${hit.layer}`, `${s.model.n_shared_experts} shared expert(s): always on`]);
    const c = hit.moeRow * s.E + hit.expert;
    const lines = [`layer ${hit.layer} · expert ${hit.expert}`];
    if (t >= 0) {
      const { ids, weights } = s.routingOf(t, hit.moeRow);
      const k = ids.indexOf(hit.expert);
      lines.push(k >= 0 ? `selected · rank ${k + 1} of ${s.K} · weight ${weights[k].toFixed(4)}` : "not selected");
      const p = s.probs[t];
      if (p) {
        const row = p.subarray(hit.moeRow * s.E, (hit.moeRow + 1) * s.E), v = row[hit.expert];
        let rank = 1;
        for (const q of row) if (q > v) rank++;
        lines.push(`router probability ${v.toFixed(4)} · rank ${rank} of ${s.E}`);
      }
    }
    lines.push(`fired ${s.counts.both[c]}× in ${s.applied} tokens so far`);
    showTooltip(ev, lines);
  }
}
