// Current-token panel: one token's routing over every MoE layer. Selected experts
// are bright in proportion to their gate weight; when router probabilities were
// captured, the unselected ones glow faintly in proportion to their probability.
//
// Which token: the one hovered in the token stream, else the pinned one, else the
// newest applied token. Without probabilities a token touches only L*K cells, so
// switching tokens repaints the old and new selections; with probabilities every
// cell changes and the grid is repainted in one ImageData pass.
import { LayerExpertGrid, makePalette } from "./grid.js";
import { Flow } from "./flow.js";
import { quoteToken } from "./special.js";
import { showTooltip, hideTooltip } from "./tooltip.js";

const FAINT_TOP = 127;          // palette 1..127: probability; 128..255: selected by weight
export const PANEL_PALETTE = makePalette([
  [0, [22, 27, 38]], [1 / 255, [24, 31, 46]], [FAINT_TOP / 255, [64, 92, 150]],
  [128 / 255, [150, 88, 26]], [0.75, [240, 160, 50]], [1, [255, 246, 200]],
]);

export class PanelView {
  // mode(): the playback mode; reducedMotion(): prefers-reduced-motion is set
  // speed(): the playback speed, which the single-token sweep follows
  constructor(canvas, state, { title, pinned, mode, reducedMotion, speed } = {}) {
    this.state = state;
    this.grid = new LayerExpertGrid(canvas, { palette: PANEL_PALETTE, maxGridCss: 360, maxRowCss: 34 });
    this.title = title || null;
    this.hovered = null;        // token index under the mouse in the token stream
    this.pinnedOf = pinned || (() => null);   // token index pinned in the token stream
    this.modeOf = mode || (() => "sequence");
    this.reducedOf = reducedMotion || (() => false);
    this.speedOf = speed || (() => 1);
    this.flow = new Flow(state);
    this.drawn = { gen: -1, t: -1, flow: null };
    this.out = null;            // scratch for Flow.write: {next, touched, n}
    canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    canvas.addEventListener("mouseleave", hideTooltip);
  }

  // A hovered or pinned token is shown still; otherwise the cursor's token, or in
  // "all at once" the batch the cursor has just passed.
  target() {
    const s = this.state, still = this.hovered ?? this.pinnedOf();
    if (still !== null && still >= 0 && still < s.nTokens) return { target: { kind: "token", t: still }, still: true };
    const n = s.applied;
    if (n <= 0) return { target: null, still: false };
    if (this.modeOf() === "all") {
      const r = s.batchEndingAt(n);
      if (r && r[1] - r[0] > 1) return { target: { kind: "batch", a: r[0], b: r[1] }, still: false };
    }
    return { target: { kind: "token", t: n - 1 }, still: false };
  }

  shownToken() {
    const c = this.flow.cur;
    return c ? (c.kind === "token" ? c.t : c.b - 1) : -1;
  }

  update(now = performance.now()) {
    const s = this.state;
    if (!s.model) return;
    if (this.grid.model !== s.model) { this.grid.setModel(s.model); this.drawn.gen = -1; }
    const resized = this.grid.fit();
    const d = this.drawn, fresh = resized || d.gen !== s.gen;
    if (d.gen !== s.gen) this.flow.reset();
    const { target, still } = this.target();
    const moved = this.flow.advance(target, now, { mode: this.modeOf(), still, reduced: this.reducedOf(), speed: this.speedOf() });
    this.updateTitle();              // also when only hovered/pinned changed for the same token
    if (!fresh && !moved) return;
    const n = s.L * s.E;
    if (!this.levels || this.levels.length !== n) {
      this.levels = new Uint8Array(n);
      this.out = { next: new Uint8Array(n), touched: new Int32Array(n), n: 0 };
      this.drawnCells = new Int32Array(n);
      this.nDrawn = 0;
    }
    const out = this.out, cur = this.flow.cur;
    out.n = 0;
    const front = this.flow.write(out, now);
    const lv = this.levels;
    if (fresh || (cur && cur.kind === "token" && s.probsOf(cur.t)) || d.probs) {
      // every cell may change (router probabilities): one pass over the whole grid
      lv.fill(0);
      for (let i = 0; i < out.n; i++) lv[out.touched[i]] = out.next[out.touched[i]];
      this.grid.paintAll(lv);
    } else {
      // only the cells lit last frame or this frame: those whose level changed
      const changed = this.changed && this.changed.length >= n ? this.changed : (this.changed = new Int32Array(n));
      let m = 0;
      for (let i = 0; i < this.nDrawn; i++) {
        const c = this.drawnCells[i];
        if (lv[c] !== out.next[c]) { lv[c] = out.next[c]; changed[m++] = c; }
      }
      for (let i = 0; i < out.n; i++) {
        const c = out.touched[i];
        if (lv[c] !== out.next[c]) { lv[c] = out.next[c]; changed[m++] = c; }
      }
      this.grid.paintCells(changed, m, lv);
    }
    // keep the lit cells for the next frame; clear the scratch
    this.drawnCells.set(out.touched.subarray(0, out.n));
    this.nDrawn = out.n;
    for (let i = 0; i < out.n; i++) out.next[out.touched[i]] = 0;
    d.gen = s.gen;
    d.t = this.shownToken();
    d.probs = !!(cur && cur.kind === "token" && s.probsOf(cur.t));
    d.flow = this.flow.describe(now);
    d.front = front;
  }

  updateTitle() {
    if (!this.title) return;
    const s = this.state, c = this.flow.cur;
    let text = s.nTokens ? "before the first token" : "no token yet";
    if (c && c.kind === "batch") {
      text = `prompt batch #${c.a}–#${c.b - 1} · ${c.b - c.a} tokens lit together · brighter = chosen by more of them`;
    } else if (c) {
      const t = c.t, tok = s.tokens[t];
      const how = this.hovered !== null ? "hovered" : this.pinnedOf() !== null ? "pinned" : "newest";
      text = `#${t} ${quoteToken(tok.text)} · ${tok.prompt ? "prompt" : "generated"} · ${how}` +
        (s.probsOf(t) ? " · with router probabilities" : "");
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
      const p = s.probsOf(t);
      if (p) {
        const row = p.subarray(hit.moeRow * s.E, (hit.moeRow + 1) * s.E), v = row[hit.expert];
        let rank = 1;
        for (const q of row) if (q > v) rank++;
        lines.push(`router probability ${v.toFixed(4)} · rank ${rank} of ${s.E}`);
      }
    }
    lines.push(`fired ${s.counts.all[c]}× in ${s.applied} tokens so far`);
    showTooltip(ev, lines);
  }
}
