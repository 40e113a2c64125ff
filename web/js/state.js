// The run: everything the views draw, fed only by protocol messages
// (docs/protocol.md). A live socket and a trace replay feed the same messages,
// so every view works for both.
//
// Two positions matter:
//   nTokens  – tokens received so far (routing stored in growable typed arrays)
//   applied  – tokens folded into the cumulative figures (the playback cursor).
// Playback moves `applied`; the views draw the figures at `applied`.

import { TOKEN_SELECTIONS, dormantOf } from "./figures.js";

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
    this.ids = new Int32Array(this.capacity * L * K);        // [token][layer][k]
    this.weights = new Float32Array(this.capacity * L * K);
    this.probs = [];               // per token: Float32Array(L*E) or null (only when captured)
    this.hasProbs = false;
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
        this.reset();
        this.run = { id: msg.run, prompt: msg.prompt, settings: msg.settings || {} };
        this.status = "running";
        this.message = "prefill…";
        break;
      case "prompt":
        this.prefillSeconds = msg.seconds || 0;
        this.addTokens(msg.tokens, msg.expert_ids, msg.weights, msg.probs);
        this.message = `prefilled ${msg.tokens.length} tokens`;
        break;
      case "token":
        this.decodeSeconds += msg.seconds || 0;
        this.addTokens([msg.token], [msg.expert_ids], [msg.weights], msg.probs ? [msg.probs] : undefined);
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

  // tokens: [{id,text,prompt}]; ids/weights: [n][L][K] nested arrays; probs: [n][L][E] or undefined
  addTokens(tokens, ids, weights, probs) {
    const { L, E, K } = this;
    const n = tokens.length;
    this.reserve(this.nTokens + n);
    for (let t = 0; t < n; t++) {
      let o = (this.nTokens + t) * L * K;
      const idsT = ids[t], wT = weights[t];
      for (let l = 0; l < L; l++) {
        const il = idsT[l], wl = wT[l];
        for (let k = 0; k < K; k++, o++) { this.ids[o] = il[k]; this.weights[o] = wl[k]; }
      }
      let p = null;
      if (probs && probs[t]) {
        p = new Float32Array(L * E);
        for (let l = 0; l < L; l++) p.set(probs[t][l], l * E);
        this.hasProbs = true;
      }
      this.probs.push(p);
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
    const ids = new Int32Array(this.capacity * per); ids.set(this.ids); this.ids = ids;
    const w = new Float32Array(this.capacity * per); w.set(this.weights); this.weights = w;
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
    return { ...dormantOf(this.counts[sel], this.L, this.E), tokens: this.appliedOf[sel] };
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

  // Index of the batch that token t belongs to; playback's "all at once" steps by batch.
  batchEndAfter(n) {
    for (const end of this.batchEnds) if (end > n) return end;
    return this.nTokens;
  }

  // The batch that ends exactly at n ([start, n)), or null when n is inside a batch
  // (a scrub into the prompt): "all at once" shows a whole batch only when the cursor ends one.
  batchEndingAt(n) {
    let prev = 0;
    for (const end of this.batchEnds) {
      if (end === n) return [prev, end];
      if (end > n) return null;
      prev = end;
    }
    return null;
  }

  batchStartBefore(n) {
    let prev = 0;
    for (const end of this.batchEnds) { if (end >= n) return prev; prev = end; }
    return prev;
  }
}

// Field order differs between the page's embedded JSON (sorted) and the socket's.
function sameModel(a, b) {
  if (!a || !b) return false;
  const keys = Object.keys(a).sort();
  return keys.length === Object.keys(b).length && JSON.stringify(a, keys) === JSON.stringify(b, keys);
}

export function describeFinish(f) {
  if (!f) return "done";
  const rate = f.decode_seconds > 0 ? `, ${(f.n_generated / f.decode_seconds).toFixed(1)} tok/s` : "";
  return `${f.reason}: ${f.n_prompt} prompt + ${f.n_generated} generated tokens${rate}`;
}
