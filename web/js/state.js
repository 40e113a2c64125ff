// The run: everything the views draw. Two ways in, one layout, so every view
// works for both:
//   ingest(msg)      a live run's protocol messages (docs/protocol.md), token by
//                    token into growable typed arrays
//   loadTrace(trace) a recorded run in bulk (replays, permalinks, static sites,
//                    opened files): the trace's flat typed arrays (tracecheck.js)
//                    become the state's arrays as they are, no per-token work
//
// Two positions matter:
//   nTokens  – tokens received so far (routing stored in growable typed arrays)
//   applied  – tokens folded into the cumulative figures (the playback cursor).
// Playback moves `applied`; the views draw the figures at `applied`.

import { TOKEN_SELECTIONS, dormantOf } from "./figures.js";
import { Candidates, routingK } from "./whatif.js";

export class RunState {
  constructor(model = null) {
    this.gen = 0;            // bumped on a new model or run: views redraw from scratch
    this.status = "idle";    // idle | queued | running | done | cancelled | error
    this.message = "";       // last status line (queue position, error text, ...)
    if (model) this.setModel(model); else this.model = null;
  }

  setModel(model) {
    this.model = model;
    this.L = model.moe_layers.length;
    this.E = model.n_expert;
    this.K = model.n_expert_used;
    // model layer index -> MoE row (routing arrays only have MoE layers), -1 for dense
    this.moeRowOfLayer = new Int32Array(model.n_layer).fill(-1);
    model.moe_layers.forEach((layer, row) => { this.moeRowOfLayer[layer] = row; });
    this.reset();
  }

  reset() {
    const { L, E, K } = this;
    this.gen++;
    this.run = null;
    this.finish = null;
    this.summary = null;
    this.permalink = null;
    this.done = false;
    this.tokens = [];              // {id, text, prompt}
    this.nTokens = 0;
    this.nPrompt = 0;
    this.batchEnds = [];           // token count after each message: a prompt batch, then one per token
    this.capacity = 64;
    this.ids = new Int32Array(this.capacity * L * K);        // [token][layer][k] (a .moetrace's may be Int16Array)
    this.weights = new Float32Array(this.capacity * L * K);
    // router probabilities (only when captured): [token][layer][expert] in `probs`,
    // allocated with the first token that has them; probsOf(t) gives a token's
    this.probs = null;
    this.probsAt = new Uint8Array(this.capacity);           // 1: token t has probabilities
    this.hasProbs = false;
    this.candidates = new Candidates();   // next-token candidates, when the run recorded them
    this.prefillSeconds = 0;
    this.decodeSeconds = 0;
    // Cumulative figures at the cursor, per token selection (figures.js: all, prompt,
    // generated). Counts are exact integers so the dormant numbers equal a numpy
    // recount of the trace.
    const per = (make) => Object.fromEntries(TOKEN_SELECTIONS.map((sel) => [sel, make()]));
    this.counts = per(() => new Int32Array(L * E));
    // summed gate weight per selection (`mass` is all tokens'): the heatmap follows the tokens toggle too
    this.massOf = per(() => new Float32Array(L * E));
    this.mass = this.massOf.all;
    this.maxCountOf = per(() => 0);
    this.maxMassOf = per(() => 0);
    this.hitPerLayer = per(() => new Int32Array(L));
    this.hit = per(() => 0);
    this.appliedOf = per(() => 0);
    this.maxCount = 0;
    this.maxMass = 0;
    this.applied = 0;
  }

  // ---- messages in ----------------------------------------------------------

  ingest(msg) {
    switch (msg.type) {
      case "model":
        // the page may already hold this model (embedded in the HTML): keep the state then
        if (!sameModel(this.model, msg.model)) this.setModel(msg.model);
        break;
      case "queued":
        this.status = "queued";
        this.message = `queued: ${msg.position} run${msg.position === 1 ? "" : "s"} ahead`;
        break;
      case "start":
        this.K = routingK(this.model, msg.settings);      // the run's top-k (a what-if run may override it)
        this.reset();
        this.run = { id: msg.run, prompt: msg.prompt, settings: msg.settings || {} };
        this.status = "running";
        this.message = "prefill…";
        break;
      case "prompt":
        this.prefillSeconds = msg.seconds || 0;
        this.addTokens(msg.tokens, msg.expert_ids, msg.weights, msg.probs);
        this.candidates.append(msg.candidates);
        this.message = `prefilled ${msg.tokens.length} tokens`;
        break;
      case "token":
        this.decodeSeconds += msg.seconds || 0;
        this.addTokens([msg.token], [msg.expert_ids], [msg.weights], msg.probs ? [msg.probs] : undefined);
        this.candidates.append(msg.candidates);
        this.message = "decoding…";
        break;
      case "done":
        this.finish = msg.finish;
        this.summary = msg.summary || null;
        // only a same-site path: the page never navigates to a server-supplied URL elsewhere
        this.permalink = typeof msg.permalink === "string" && msg.permalink.startsWith("/r/") ? msg.permalink : null;
        this.done = true;
        this.status = msg.finish && msg.finish.reason === "cancelled" ? "cancelled" : "done";
        this.message = describeFinish(msg.finish) +
          (typeof msg.permalink_error === "string" ? ` · not kept: ${msg.permalink_error}` : "");
        break;
      case "error":
        // an error during a run ends it (the server sends no `done` then); what
        // arrived stays viewable
        if (this.status === "running" || this.status === "queued") this.done = true;
        this.status = "error";
        this.message = String(msg.message);
        break;
      default:
        break;   // unknown messages are ignored: newer servers may add some
    }
  }

  // A live run's tokens (one message): tokens [{id,text,prompt}]; ids/weights: [n][L][K]
  // nested arrays; probs: [n][L][E] or undefined.
  addTokens(tokens, ids, weights, probs) {
    const { L, E, K } = this;
    const n = tokens.length;
    this.reserve(this.nTokens + n);
    for (let t = 0; t < n; t++) {
      const row = this.nTokens + t;
      let o = row * L * K;
      const idsT = ids[t], wT = weights[t];
      for (let l = 0; l < L; l++) {
        const il = idsT[l], wl = wT[l];
        for (let k = 0; k < K; k++, o++) { this.ids[o] = il[k]; this.weights[o] = wl[k]; }
      }
      if (probs && probs[t]) {
        if (!this.probs) this.probs = new Float32Array(this.capacity * L * E);
        for (let l = 0; l < L; l++) this.probs.set(probs[t][l], (row * L + l) * E);
        this.probsAt[row] = 1;
        this.hasProbs = true;
      }
      const tok = tokens[t];
      this.tokens.push({ id: tok.id, text: String(tok.text ?? ""), prompt: !!tok.prompt });
      if (tok.prompt) this.nPrompt++;
    }
    this.nTokens += n;
    this.batchEnds.push(this.nTokens);
  }

  reserve(n) {
    if (n <= this.capacity) return;
    while (this.capacity < n) this.capacity *= 2;
    const per = this.L * this.K;
    const ids = new Int32Array(this.capacity * per); ids.set(this.ids.subarray(0, this.nTokens * per)); this.ids = ids;
    const w = new Float32Array(this.capacity * per); w.set(this.weights.subarray(0, this.nTokens * per)); this.weights = w;
    const at = new Uint8Array(this.capacity); at.set(this.probsAt.subarray(0, this.nTokens)); this.probsAt = at;
    if (this.probs) {
      const p = new Float32Array(this.capacity * this.L * this.E);
      p.set(this.probs.subarray(0, this.nTokens * this.L * this.E));
      this.probs = p;
    }
  }

  // A whole recorded run at once (the page's in-memory trace, tracecheck.js: header
  // fields plus flat routing arrays), shown as a finished run with the cursor at 0.
  // The routing arrays become the state's own (not copied); the token list is the
  // trace's. What a live run's messages would leave, without sending any: the prompt
  // as one batch, then one batch per generated token.
  // A trace marked `partial` (the head of a long run, moeviz/trace/partial.py) is shown
  // as a run still arriving, until completeTrace() gives the whole of it.
  loadTrace(trace, runId = null) {
    if (!sameModel(this.model, trace.model)) this.setModel(trace.model);
    this.K = routingK(trace.model, trace.settings);
    this.reset();
    this.run = { id: runId, prompt: trace.prompt, settings: trace.settings || {} };
    this.useTrace(trace);
    if (trace.partial) {
      this.status = "loading";
      this.message = `loading: ${this.nTokens} of ${trace.partial.n_tokens} tokens…`;
    }
  }

  // The whole trace of the run whose head loadTrace() showed: its first tokens are the
  // head's, so the cursor and the figures at it stand; the rest joins as a live run's
  // tokens would.
  completeTrace(trace) {
    if (!sameModel(this.model, trace.model) || trace.tokens.length < this.nTokens) {
      throw new Error("this trace is not the whole of the run shown");
    }
    this.useTrace(trace);
  }

  useTrace(trace) {
    const { L, E } = this, r = trace.routing, tokens = trace.tokens, n = tokens.length;
    this.tokens = tokens;
    let nPrompt = 0;
    while (nPrompt < n && tokens[nPrompt].prompt) nPrompt++;
    this.nTokens = n;
    this.nPrompt = nPrompt;
    this.capacity = n;
    this.ids = r.expert_ids;
    this.weights = r.weights;
    this.candidates = new Candidates();
    this.candidates.load(trace.candidates, n);
    this.probsAt = new Uint8Array(n);
    this.probs = null;
    this.hasProbs = false;
    if (r.probs) {
      this.probs = r.probs;
      this.probsAt.fill(1);
      this.hasProbs = n > 0 && r.probs.length === n * L * E;
    }
    const ends = new Array(n - nPrompt + 1);
    for (let i = 0; i < ends.length; i++) ends[i] = nPrompt + i;
    this.batchEnds = ends;
    if (trace.partial) return;
    const finish = trace.finish || { reason: "length" };
    this.prefillSeconds = finish.prefill_seconds || 0;
    this.decodeSeconds = finish.decode_seconds || 0;
    this.finish = { n_prompt: nPrompt, n_generated: n - nPrompt, ...finish };
    this.summary = {};
    this.done = true;
    this.status = this.finish.reason === "cancelled" ? "cancelled" : "done";
    this.message = describeFinish(this.finish);
  }

  // Token t's router probabilities, Float32Array [L * E] (a view), or null.
  probsOf(t) {
    if (!this.probsAt[t]) return null;
    const per = this.L * this.E;
    return this.probs.subarray(t * per, (t + 1) * per);
  }

  // ---- the cursor -----------------------------------------------------------

  // Fold tokens into the cumulative figures up to `n` (exclusive). Going back
  // recounts from zero: exact, and cheap next to drawing (~1 µs per token-layer).
  applyTo(n) {
    n = Math.max(0, Math.min(n, this.nTokens));
    if (n < this.applied) this.clearFigures();
    for (let t = this.applied; t < n; t++) this.applyToken(t);
    this.applied = n;
  }

  clearFigures() {
    for (const p of TOKEN_SELECTIONS) {
      this.counts[p].fill(0); this.hitPerLayer[p].fill(0); this.hit[p] = 0; this.appliedOf[p] = 0;
      this.massOf[p].fill(0); this.maxCountOf[p] = 0; this.maxMassOf[p] = 0;
    }
    this.maxCount = 0; this.maxMass = 0; this.applied = 0;
  }

  applyToken(t) {
    const { L, E, K } = this;
    // each token counts in "all" and in its own selection
    const sel = this.tokens[t].prompt ? "prompt" : "generated";
    const cp = this.counts[sel], cb = this.counts.all;
    const hp = this.hitPerLayer[sel], hb = this.hitPerLayer.all;
    const mp = this.massOf[sel], mb = this.mass;
    let maxCp = this.maxCountOf[sel], maxMp = this.maxMassOf[sel];
    let o = t * L * K;
    for (let l = 0; l < L; l++) {
      const base = l * E;
      for (let k = 0; k < K; k++, o++) {
        const cell = base + this.ids[o], w = this.weights[o];
        const cph = ++cp[cell];
        if (cph === 1) { hp[l]++; this.hit[sel]++; }
        if (cph > maxCp) maxCp = cph;
        const c = ++cb[cell];
        if (c === 1) { hb[l]++; this.hit.all++; }
        if (c > this.maxCount) this.maxCount = c;
        const m = (mb[cell] += w);
        if (m > this.maxMass) this.maxMass = m;
        const mph = (mp[cell] += w);
        if (mph > maxMp) maxMp = mph;
      }
    }
    this.maxCountOf[sel] = maxCp; this.maxMassOf[sel] = maxMp;
    this.maxCountOf.all = this.maxCount; this.maxMassOf.all = this.maxMass;
    this.appliedOf[sel]++;
    this.appliedOf.all++;
  }

  // ---- derived figures ------------------------------------------------------

  // Dormant (figures.js) among the applied tokens of a selection ("all", "prompt", "generated").
  dormant(sel) {
    return { ...dormantOf(this.counts[sel], this.L, this.E, { masked: this.maskedCells() }), tokens: this.appliedOf[sel] };
  }

  // The cells (row * E + expert) the shown run masked (settings.mask: [[layer, expert], ...]).
  maskedCells() {
    if (this.maskedFor === this.run) return this.masked;
    this.maskedFor = this.run;
    const pairs = this.run && this.run.settings && Array.isArray(this.run.settings.mask) ? this.run.settings.mask : [];
    this.masked = new Set();
    for (const p of pairs) {
      const row = Array.isArray(p) && Number.isInteger(p[0]) ? this.moeRowOfLayer[p[0]] : -1;
      if (row >= 0 && Number.isInteger(p[1]) && p[1] >= 0 && p[1] < this.E) this.masked.add(row * this.E + p[1]);
    }
    return this.masked;
  }

  // The K (expert, weight) pairs of token t at MoE row l, in selection order.
  routingOf(t, l) {
    const o = (t * this.L + l) * this.K;
    return { ids: this.ids.subarray(o, o + this.K), weights: this.weights.subarray(o, o + this.K) };
  }

  maxWeightOf(t) {
    const per = this.L * this.K, o = t * per;
    let m = 0;
    for (let i = o; i < o + per; i++) if (this.weights[i] > m) m = this.weights[i];
    return m;
  }

  // Batches (batchEnds, increasing): found by binary search, called every frame on
  // runs of any length. The end of the first batch ending after n; playback's
  // "all at once" steps by batch.
  batchEndAfter(n) {
    const i = this.firstEnd((end) => end > n);
    return i < this.batchEnds.length ? this.batchEnds[i] : this.nTokens;
  }

  // The batch that ends exactly at n ([start, n)), or null when n is inside a batch
  // (a scrub into the prompt): "all at once" shows a whole batch only when the cursor ends one.
  batchEndingAt(n) {
    const ends = this.batchEnds, i = this.firstEnd((end) => end >= n);
    return i < ends.length && ends[i] === n ? [i > 0 ? ends[i - 1] : 0, n] : null;
  }

  batchStartBefore(n) {
    const ends = this.batchEnds, i = this.firstEnd((end) => end >= n);
    return i > 0 ? ends[i - 1] : 0;
  }

  // the first index of batchEnds where after(end) holds (after is monotone), else its length
  firstEnd(after) {
    const ends = this.batchEnds;
    let lo = 0, hi = ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (after(ends[mid])) hi = mid; else lo = mid + 1;
    }
    return lo;
  }
}

// Field order differs between the page's embedded JSON (sorted) and the socket's.
function sameModel(a, b) {
  if (!a || !b) return false;
  const keys = Object.keys(a).sort();
  return keys.length === Object.keys(b).length && JSON.stringify(a, keys) === JSON.stringify(b, keys);
}

// Why a run stopped, in words (finish.reason is the trace format's code: length, eos, ...).
const STOPPED = { length: "reached max tokens", eos: "the model ended its text", stop: "a stop string appeared",
  context: "the context is full", cancelled: "cancelled" };

export function describeFinish(f) {
  if (!f) return "done";
  const rate = f.decode_seconds > 0 ? `, ${(f.n_generated / f.decode_seconds).toFixed(1)} tok/s` : "";
  return `done, ${STOPPED[f.reason] || f.reason}: ${f.n_prompt} prompt + ${f.n_generated} generated tokens${rate}`;
}
