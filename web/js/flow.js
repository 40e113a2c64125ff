// The current-token panel's animation: which token (or prefill batch) is shown, how
// far it has travelled through the layers, and what it leaves behind. Pure timing and
// palette levels; panel.js paints them.
//
//   single   one token sweeps down the layers, experts lighting by gate weight as it
//            reaches them; the layer just reached glows and the glow fades behind it
//            (the trail); the previous token stays dim below the sweep until replaced
//   sequence tokens in order, each lit at once; the last few fade out behind it
//   all      a whole batch (the prompt's prefill) lit together, cells by the share of
//            the batch's tokens that chose them, sweeping the layers as one wave
// With prefers-reduced-motion nothing sweeps, glows or fades: each step is shown whole.
//
// Levels are PANEL_PALETTE indices: 1..127 router probability (blue), 128..255 orange,
// where a selected expert is never under SELECTED_MIN and a dimmed earlier token never
// over DIM_MAX, so the two always read apart (tests classify pixels by this).

export const SELECTED_MIN = 128 + Math.round(127 * 0.3);    // 166
export const DIM_MAX = 128 + Math.round(127 * 0.18);        // 151
const GLOW = 0.35;               // extra brightness at the layer the token has just reached
const GLOW_MS = 280;
export const TRAIL_MS = 480;     // sequence: how long a passed token stays dimly lit
const TRAIL_TOKENS = 3;
export const HOLD_MS = 320;      // single: the finished token stays this long before the next

// A sweep lasts ~70 ms a layer, but a 94-layer model should not take 7 s a token.
export function sweepMs(L) { return Math.min(900, Math.max(360, 70 * L)); }

// single mode's step: the sweep, then a pause to read the result
export function singleStepMs(L) { return sweepMs(L) + HOLD_MS; }

const level = (x) => 128 + Math.round(127 * Math.min(1, Math.max(0, x)));

export class Flow {
  constructor(state) {
    this.state = state;
    this.reset();
  }

  reset() {
    this.cur = null;             // {kind: "token", t} | {kind: "batch", a, b}, with start, sweep, x
    this.trail = [];             // earlier targets, newest first, with `since`
    this.reduced = false;
  }

  // target: what the panel should show now (null: nothing); how: {mode, still, reduced}.
  // still: a hovered or pinned token, shown whole, without animation or trail.
  // Returns true when the frame differs from the last one (a new target or motion).
  // speed: the playback speed (playback.js), which a sweep's duration follows.
  advance(target, now, { mode, still = false, reduced = false, speed = 1 }) {
    const s = this.state;
    this.reduced = reduced;
    if (this.mode === undefined) this.mode = mode;
    if (target) target = { ...target, still };
    const changed = !sameTarget(target, this.cur);
    if (changed) {
      if (this.cur && !this.cur.still && target && !still) this.trail.unshift({ ...this.cur, since: now });
      if (still || !target) this.trail.length = 0;
      this.trail.length = Math.min(this.trail.length, TRAIL_TOKENS);
      // a step back, a jump (a scrub) or a change of mode is not a journey: show it whole
      const gap = this.cur && target ? startOf(target) - endOf(this.cur) : 0;
      const forward = gap >= 0 && gap <= 8 && mode === this.mode;
      if (!forward) this.trail.length = 0;
      const sweeps = !still && !reduced && forward && (mode === "single" || (mode === "all" && target && target.kind === "batch"));
      this.cur = target ? { ...target, still, start: now, sweep: sweeps ? sweepMs(s.L) / speed : 0, x: this.weightsOf(target) } : null;
      if (!sweeps && mode !== "sequence") this.trail.length = 0;     // single/all steps replace, they do not fade
      if (reduced) this.trail.length = 0;
    }
    this.mode = mode;
    // Earlier targets: under a sweep they stay (dim) until it has replaced them on every
    // layer; otherwise (sequence) each fades out over TRAIL_MS.
    const c = this.cur;
    if (c && c.sweep) { if (now - c.start >= c.sweep) this.trail.length = 0; }
    else this.trail = this.trail.filter((e) => now - e.since < TRAIL_MS);
    const moving = this.moving(now);
    const wasMoving = this.wasMoving;
    this.wasMoving = moving;
    return changed || moving || wasMoving;
  }

  // still drawing something that changes with time
  moving(now) {
    const c = this.cur;
    if (c && c.sweep > 0 && now - c.start < c.sweep + GLOW_MS) return true;
    return this.trail.length > 0;
  }

  // layers of the current target lit so far (0..L); L when it has arrived everywhere
  front(now) {
    const c = this.cur, L = this.state.L;
    if (!c) return 0;
    if (!c.sweep) return L;
    const p = (now - c.start) / c.sweep;
    return p >= 1 ? L : Math.min(L, Math.floor(p * L) + 1);
  }

  // Brightness (0..1) of each selection of the target: per (layer, k) for a token,
  // per cell for a batch (share of its tokens, relative to the busiest cell).
  weightsOf(target) {
    if (!target) return null;
    const s = this.state, { L, E, K } = s;
    if (target.kind === "token") {
      const x = new Float32Array(L * K), o = target.t * L * K, wmax = s.maxWeightOf(target.t) || 1;
      // never dimmer than 30%: a selected expert must not read as a probable one
      for (let i = 0; i < L * K; i++) x[i] = 0.3 + 0.7 * Math.min(1, Math.abs(s.weights[o + i]) / wmax);
      return x;
    }
    const counts = new Uint16Array(L * E);
    let max = 1;
    for (let t = target.a; t < target.b; t++) {
      for (let l = 0, o = t * L * K; l < L; l++) {
        for (let k = 0; k < K; k++, o++) {
          const c = ++counts[l * E + s.ids[o]];
          if (c > max) max = c;
        }
      }
    }
    const x = new Float32Array(L * E);
    for (let c = 0; c < L * E; c++) x[c] = counts[c] ? 0.3 + 0.7 * (counts[c] / max) : 0;
    return x;
  }

  // Write this frame's levels. out: {next (Uint8Array L*E, zero where not written),
  // touched (Int32Array), n}: every written cell is appended to touched once. With
  // probs: the current token's router probabilities under its selections.
  write(out, now, withProbs = true) {
    const s = this.state, { L, E } = s, c = this.cur;
    const front = this.front(now);
    // earlier targets first (dim), so the current one overwrites them where they meet
    for (let i = this.trail.length - 1; i >= 0; i--) {
      const e = this.trail[i];
      const f = c && c.sweep ? 1 : Math.max(0, 1 - (now - e.since) / TRAIL_MS);
      const lv = 128 + Math.round((DIM_MAX - 128) * f * (1 - 0.5 * i / TRAIL_TOKENS));
      this.cells(e, c && c.sweep ? front : 0, L, (cell) => lv, out);
    }
    if (!c) return front;
    const p = withProbs && c.kind === "token" ? s.probsOf(c.t) : null;
    if (p) {
      for (let l = 0; l < front; l++) {
        let pmax = 0;
        for (let e = l * E; e < (l + 1) * E; e++) if (p[e] > pmax) pmax = p[e];
        const f = pmax > 0 ? 126 / pmax : 0;
        for (let e = l * E; e < (l + 1) * E; e++) if (p[e] > 0) put(out, e, 1 + Math.round(p[e] * f), false);
      }
    }
    const glow = (l) => {
      if (!c.sweep || this.reduced) return 0;
      const age = now - (c.start + (c.sweep * l) / L);
      return age < 0 || age > GLOW_MS ? 0 : GLOW * (1 - age / GLOW_MS);
    };
    if (c.kind === "token") {
      const { K } = s, o = c.t * L * K;
      for (let l = 0; l < front; l++) {
        const g = glow(l);
        for (let k = 0; k < K; k++) put(out, l * E + s.ids[o + l * K + k], level(c.x[l * K + k] + g), true);
      }
    } else {
      for (let l = 0; l < front; l++) {
        const g = glow(l);
        for (let e = l * E; e < (l + 1) * E; e++) if (c.x[e] > 0) put(out, e, level(c.x[e] + g), true);
      }
    }
    return front;
  }

  // the cells of an earlier target at layers [from, to)
  cells(e, from, to, lv, out) {
    const s = this.state, { L, E, K } = s;
    const put1 = (cell) => put(out, cell, lv(cell), true);
    if (e.kind === "token") {
      const o = e.t * L * K;
      for (let l = from; l < to; l++) for (let k = 0; k < K; k++) put1(l * E + s.ids[o + l * K + k]);
    } else {
      for (let l = from; l < to; l++) for (let c = l * E; c < (l + 1) * E; c++) if (e.x[c] > 0) put1(c);
    }
  }

  // What is drawn, for window.moeviz: the target, the layers lit, the dimmed earlier ones.
  describe(now) {
    const c = this.cur;
    if (!c) return null;
    const front = this.front(now);
    const desc = (e) => (e.kind === "token" ? { kind: "token", t: e.t } : { kind: "batch", range: [e.a, e.b] });
    return { ...desc(c), still: !!c.still, front, layers: this.state.L, sweeping: front < this.state.L,
      dimmed: this.trail.map(desc) };
  }
}

// overwrite: selections replace whatever is there; probabilities only fill empty cells
function put(out, cell, lv, overwrite) {
  const cur = out.next[cell];
  if (cur === 0) out.touched[out.n++] = cell;
  else if (!overwrite) return;
  out.next[cell] = lv;
}

function sameTarget(a, b) {
  if (!a || !b) return a === b;
  return a.kind === b.kind && a.t === b.t && a.a === b.a && a.b === b.b && !!a.still === !!b.still;
}

const startOf = (x) => (x.kind === "token" ? x.t : x.a);
const endOf = (x) => (x.kind === "token" ? x.t + 1 : x.b);
