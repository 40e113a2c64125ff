// Which tokens, and which figures: the glue between the RunState and the pure metric
// modules. A selection is the tokens applied at the playback cursor, optionally only
// the prompt or only the generated ones (like `moeviz stats --tokens`); prompt tokens
// come first, so it is one contiguous run of rows. compute() builds only the figure
// groups asked for (the visible tab), sharing the tallies between them.
import { tally, top1Of, top1Counts, balance, dormant, saturation, expertTokenProfile, tokenTexts } from "./metrics.js";
import { consecutive, coactivation, layerTransitions, transitionSummary, vocabularySpecialization } from "./locality.js";
import { ConfidenceCache, routerConfidence } from "./confidence.js";
import { StackDistanceCache, cacheHitRates } from "./cache.js";
const BACKGROUND_ROWS = 32;     // LRU rows simulated per frame in the background (~1-2 ms at 48 x 128)
export const GROUPS = ["balance", "saturation", "profile", "map", "locality", "vocabulary", "confidence", "cache"];

export class Analyzer {
  constructor(state) {
    this.state = state;
    this.conf = new ConfidenceCache();       // per-token values, kept per run
    this.lru = new StackDistanceCache();      // per-use stack distances, kept per run and first row
  }

  // Between recomputes (each animation frame): extend the per-token caches toward the
  // cursor within a small time budget, so opening the confidence or cache tab on a
  // long run finds them (mostly) ready. Nothing to do when they have caught up.
  background(budgetMs = 3) {
    const s = this.state, hi = s.applied;
    if (!s.model || !hi) return;
    const deadline = performance.now() + budgetMs;
    if (s.hasProbs && (this.conf.key !== s.gen || this.conf.done < hi)) this.conf.fill(s, hi, deadline);
    const done = this.lru.done(s, 0);
    if (done < hi && performance.now() < deadline) this.lru.advance(s, 0, Math.min(hi, done + BACKGROUND_ROWS));
  }

  // Rows [lo, hi) of the applied tokens in the selection.
  range(selection = "all") {
    const s = this.state, applied = s.applied;
    const nPrompt = Math.min(s.nPrompt, applied);    // prompt tokens come first (the schema says so)
    if (selection === "prompt") return [0, nPrompt];
    if (selection === "generated") return [nPrompt, applied];
    return [0, applied];
  }

  selection(selection = "all") {
    const s = this.state;
    const [lo, hi] = this.range(selection);
    return { ids: s.ids, weights: s.weights, tokens: s.tokens, lo, hi, n: hi - lo, L: s.L, E: s.E, K: s.K };
  }

  // opts: {tokens: selection name, row: MoE row for per-layer figures, expert,
  //        minCount, groups: iterable of GROUPS}. Returns raw figures (typed arrays, NaN).
  compute({ tokens = "all", row = 0, expert = 0, minCount = 10, groups = GROUPS } = {}) {
    const s = this.state, want = new Set(groups);
    const sel = this.selection(tokens);
    const { n, L, E, K } = sel, layers = s.model.moe_layers;
    const out = { tokens: n, selection: tokens, applied: s.applied, range: [sel.lo, sel.hi], layers: layers.slice(),
      n_expert: E, k: K, layer: layers[row], row, expert };
    if (n === 0) {
      out.note = tokens === "all" ? "no tokens yet" : `no ${tokens} tokens yet`;
      return out;
    }
    let tal = null, counts = null, t1 = null, t1c = null, texts = null;
    const getTally = () => tal || (tal = tally(sel));
    // Selection counts at the cursor are what RunState already keeps per token
    // selection (the same words); a copy, because views keep subarrays of a figure.
    const getCounts = () => counts || (counts = s.counts[tokens].slice());
    const getTop1 = () => t1 || (t1 = top1Of(sel));
    const getTexts = () => texts || (texts = tokenTexts(sel));

    if (want.has("balance") || want.has("cache") || want.has("locality")) {
      const counts = getCounts();
      out.utilization = { counts };
      out.balance = balance(counts, L, E, K);
      out.dormant = dormant(counts, L, E, K, n);
    }
    if (want.has("saturation")) {
      out.saturation = saturation(getTally().first, n, L, E, K, { perLayer: true });
      if (!out.dormant) out.dormant = dormant(getCounts(), L, E, K, n);
    }
    if (want.has("profile")) out.profile = expertTokenProfile(sel, row, expert, { layer: layers[row], texts: getTexts() });
    if (want.has("map")) out.routing_map = { top1: getTop1() };
    if (want.has("locality")) {
      const counts = getCounts();
      t1c = top1Counts(getTop1(), n, L, E);
      out.utilization.top1_counts = t1c;
      out.locality = consecutive(sel, counts, t1, t1c);
      out.coactivation = coactivation(sel, row, counts, layers[row]);
      out.transitions = layerTransitions(t1, n, L, E, row, layers);
      out.transition_summary = transitionSummary(t1, n, L, E, layers);
    }
    if (want.has("vocabulary")) {
      out.specialization = vocabularySpecialization(sel, getTop1(), getTexts(), { minCount, layers: layers.slice() });
    }
    if (want.has("confidence")) {
      let missing = 0;
      for (let t = sel.lo; t < sel.hi; t++) if (!s.probsAt[t]) missing++;
      if (missing) {
        out.confidence = null;
        out.confidence_note = missing === n ? "no router probabilities in this run (record with --probs, or tick "
          + "\"router probabilities\" before generating)" : `router probabilities missing for ${missing} of ${n} tokens`;
      } else {
        this.conf.fill(s, sel.hi);
        out.confidence = routerConfidence(this.conf, sel.lo, sel.hi, { L, E, K, gating: s.model.gating,
          layers: layers.slice() });
      }
    }
    if (want.has("cache")) out.cache = cacheHitRates(this.lru.histogram(s, sel.lo, sel.hi), getCounts(), L, E);
    return out;
  }
}

// Flat [rows*cols] -> nested rows (JSON for tests and the console).
export function nest(flat, rows, cols) {
  const out = [];
  for (let r = 0; r < rows; r++) out.push(Array.from(flat.subarray ? flat.subarray(r * cols, (r + 1) * cols)
    : flat.slice(r * cols, (r + 1) * cols)));
  return out;
}
