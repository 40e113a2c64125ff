// Playback: moves the state's cursor (`applied`) toward the tokens received.
//   single   – one token at a time, slowly: each step lasts as long as the panel's
//              sweep of that token through the layers plus a pause (flow.js)
//   sequence – staggered: one token per frame, a long prompt batch spread over ~0.5 s
//   all      – a whole batch as one step (the prefill batch at once, then each token);
//              a multi-token batch is held while the panel lights it
// While a run streams, playing means following it. After a run (or a replay) the
// same controls play / pause / step / scrub over all tokens.
// The speed (¼× to 8×, the speed select or [ / ]) scales every mode's pace: a single
// token's step and sweep, an "all at once" batch's hold, the tokens a frame in
// sequence. Live (the button or L) jumps to the newest token and keeps following:
// a slow mode otherwise plays a finished run long after the server is done.
import { singleStepMs, sweepMs, HOLD_MS } from "./flow.js";

const SEQUENCE_FRAMES_PER_BATCH = 30;
export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];

export class Playback {
  constructor(state, root) {
    this.state = state;
    this.mode = "sequence";
    this.playing = true;
    this.lastStep = 0;
    this.els = {
      play: root.querySelector("#pb-play"), back: root.querySelector("#pb-back"), fwd: root.querySelector("#pb-fwd"),
      start: root.querySelector("#pb-start"), end: root.querySelector("#pb-end"),
      scrub: root.querySelector("#pb-scrub"), pos: root.querySelector("#pb-pos"),
      modes: [...root.querySelectorAll("[data-mode]")],
      speed: root.querySelector("#pb-speed"), live: root.querySelector("#pb-live"),
    };
    this.speed = 1;
    this.carry = 0;              // sequence: a fraction of a token owed to the next frame
    const e = this.els;
    e.play.addEventListener("click", () => (this.playing ? this.pause() : this.play()));
    e.back.addEventListener("click", () => this.step(-1));
    e.fwd.addEventListener("click", () => this.step(1));
    e.start.addEventListener("click", () => this.seek(0));
    e.end.addEventListener("click", () => this.seek(this.state.nTokens));
    e.scrub.addEventListener("input", () => this.seek(Number(e.scrub.value)));
    for (const b of e.modes) b.addEventListener("click", () => this.setMode(b.dataset.mode));
    if (e.speed) e.speed.addEventListener("change", () => this.setSpeed(Number(e.speed.value)));
    if (e.live) e.live.addEventListener("click", () => this.toLive());
    this.setMode(this.mode);
    this.shown = "";
  }

  setMode(mode) {
    this.mode = mode;
    for (const b of this.els.modes) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
  }

  setSpeed(speed) {
    if (!SPEEDS.includes(speed)) return;
    this.speed = speed;
    if (this.els.speed) this.els.speed.value = String(speed);
  }

  // one step up or down the speeds (keys [ and ])
  faster(dir) {
    const i = SPEEDS.indexOf(this.speed) + (dir > 0 ? 1 : -1);
    this.setSpeed(SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, i))]);
  }

  // behind the tokens received (a slow mode, or paused): show the newest and keep following
  get behind() { return this.state.applied < this.state.nTokens; }

  toLive() {
    const s = this.state;
    if (s.nTokens === 0) return;
    s.applyTo(s.nTokens);
    this.playing = !s.done;       // a finished run has nothing left to follow
    this.lastStep = 0;
    this.holdUntil = 0;
  }

  // A new run: follow it from its first token.
  follow() { this.playing = true; this.lastStep = 0; this.holdUntil = 0; }

  play() {
    if (this.state.nTokens === 0) return;
    if (this.state.done && this.state.applied >= this.state.nTokens) this.state.applyTo(0);   // replay from the start
    this.playing = true;
    this.lastStep = 0;
    this.holdUntil = 0;
  }

  pause() { this.playing = false; }

  toggle() { if (this.playing) this.pause(); else this.play(); }

  step(dir) {
    const s = this.state;
    this.playing = false;
    if (this.mode === "all") this.seek(dir > 0 ? s.batchEndAfter(s.applied) : s.batchStartBefore(s.applied), false);
    else this.seek(s.applied + dir, false);
  }

  seek(n, pause = true) {
    if (pause) this.playing = false;
    this.state.applyTo(n);
  }

  // Called once per animation frame.
  tick(now) {
    const s = this.state;
    if (!this.playing || s.applied >= s.nTokens) {
      // a finished run that has been played to its end stops, so Play restarts it
      if (this.playing && s.done && s.applied >= s.nTokens) this.playing = false;
      return;
    }
    const batchEnd = s.batchEndAfter(s.applied);
    let next = s.applied;
    if (this.mode === "all") {
      if (now < (this.holdUntil || 0)) return;
      next = batchEnd;
      // the panel sweeps a batch of several tokens: let it finish before moving on
      if (batchEnd - s.applied > 1) this.holdUntil = now + (sweepMs(s.L) + HOLD_MS) / this.speed;
    } else if (this.mode === "sequence") {
      const batch = batchEnd - s.batchStartBefore(batchEnd);
      this.carry += Math.max(1, Math.ceil(batch / SEQUENCE_FRAMES_PER_BATCH)) * this.speed;
      const n = Math.floor(this.carry);
      this.carry -= n;
      next = Math.min(batchEnd, s.applied + n);
    } else if (now - this.lastStep >= singleStepMs(s.L) / this.speed) {
      next = s.applied + 1;
      this.lastStep = now;
    }
    if (next !== s.applied) s.applyTo(next);
  }

  // The controls reflect the cursor (after tick and after seeks).
  render() {
    const s = this.state, e = this.els;
    const key = `${s.applied}/${s.nTokens}/${this.playing}/${s.done}/${this.mode}/${this.speed}`;
    if (key === this.shown) return;
    this.shown = key;
    e.scrub.max = String(s.nTokens);
    e.scrub.value = String(s.applied);
    e.pos.textContent = `${s.applied} / ${s.nTokens}`;
    const none = s.nTokens === 0;
    // nothing to play yet: a play button, disabled, not a pause icon as if something ran
    const playing = this.playing && !none;
    e.play.textContent = playing ? "❚❚" : "▶";
    e.play.title = playing ? "pause (space)" : "play (space)";
    e.play.setAttribute("aria-label", playing ? "pause" : "play");
    e.play.disabled = none;
    for (const b of [e.back, e.start]) b.disabled = none || s.applied === 0;
    for (const b of [e.fwd, e.end]) b.disabled = none || s.applied >= s.nTokens;
    e.scrub.disabled = none;
    if (e.live) {
      // following the newest token already, or nothing more to come: nothing to jump to
      e.live.disabled = none || !this.behind;
    }
  }
}
