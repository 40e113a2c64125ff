// Analysis panels: the figures of moeviz.analysis (docs/analysis.md) over the tokens
// applied at the playback cursor, in tabs under the cumulative heatmap.
//
// Interface used by main.js: mountAnalysis({root, state, heatmap}) -> {update(), figures(opts), choose(change)}.
//   update()      called every animation frame: returns at once unless the cursor,
//                 the run or a choice (tab, tokens, layer, expert, ...) changed; a
//                 moving cursor recomputes at most 4 times a second, and only the
//                 visible tab's figures.
//   figures(opts) the figures as plain JSON, named as in moeviz.analysis (see
//                 figuresJSON below); for tests and the console.
//   choose(c)     show a choice: {tab, row, expert, ...} (main.js: a heatmap cell chosen)
// Choosing a (layer, expert): the selects, or a cell of the heatmap (cellinfo.js).
// The vocabulary threshold adapts to the run until set by hand: a short run has few
// token ids seen 10 times, and an empty table by default says nothing.
import { Analyzer, GROUPS, nest } from "./compute.js";
import { TOKEN_SELECTIONS } from "../figures.js";
import { toJSON } from "./metrics.js";
import { el } from "./draw.js";
import { BalanceView, SaturationView } from "./view-balance.js";
import { ProfileView, MapView, VocabularyView } from "./view-tokens.js";
import { LocalityView } from "./view-locality.js";
import { ConfidenceView, CacheView } from "./view-router.js";

const THROTTLE_MS = 250;
const TABS = [
  ["balance", "utilization"], ["saturation", "dormant curve"], ["profile", "expert tokens"], ["map", "routing map"],
  ["locality", "locality"], ["vocabulary", "vocabulary"], ["confidence", "confidence"], ["cache", "expert cache"],
];

export function mountAnalysis({ root, state, heatmap }) {
  const panels = new AnalysisPanels(root, state, heatmap);
  return { update: () => panels.update(), figures: (opts) => panels.figures(opts), choose: (c) => panels.choose(c) };
}

class AnalysisPanels {
  constructor(root, state, heatmap) {
    this.root = root;
    this.state = state;
    this.analyzer = new Analyzer(state);
    this.ui = {
      tab: "balance", tokens: "all", row: 0, expert: 0, minCount: 10, minCountAuto: true, cacheScope: "all",
      selectRow: (r) => this.choose({ row: r }),
      setMinCount: (v) => this.choose({ minCount: v, minCountAuto: false }),
      setCacheScope: (v) => this.choose({ cacheScope: v }),
      selection: (tokens) => this.analyzer.selection(tokens),     // the cache tab's policy table (policies.js)
    };
    this.model = null;
    this.shown = "";            // key of what is drawn
    this.last = -Infinity;      // when it was computed
    this.width = 0;
    this.timing = null;
    this.computes = 0;          // recomputes of the visible tab (tests check the throttle)
    root.hidden = true;
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver((entries) => { this.width = Math.floor(entries[entries.length - 1].contentRect.width); })
        .observe(root);
    }
  }

  build(model) {
    this.model = model;
    const ui = this.ui;
    ui.row = Math.min(ui.row, model.moe_layers.length - 1);
    ui.expert = Math.min(ui.expert, model.n_expert - 1);
    const tabs = el("span", { className: "seg an-tabs", role: "tablist", ariaLabel: "analysis" });
    this.tabButtons = TABS.map(([id, label]) => {
      const b = el("button", { role: "tab", dataset: { anTab: id } }, label);
      b.addEventListener("click", () => this.choose({ tab: id }));
      tabs.append(b);
      return b;
    });
    const which = el("span", { className: "seg", role: "group", ariaLabel: "tokens" });
    this.tokenButtons = TOKEN_SELECTIONS.map((p) => {
      const b = el("button", { dataset: { anTokens: p } }, p);
      b.addEventListener("click", () => this.choose({ tokens: p }));
      which.append(b);
      return b;
    });
    this.layerSelect = el("select", { className: "an-layer", ariaLabel: "MoE layer" });
    model.moe_layers.forEach((layer, r) => this.layerSelect.append(new Option(`L${layer}`, String(r))));
    this.layerSelect.addEventListener("change", () => this.choose({ row: Number(this.layerSelect.value) }));
    this.expertSelect = el("select", { className: "an-expert", ariaLabel: "expert" });
    for (let e = 0; e < model.n_expert; e++) this.expertSelect.append(new Option(String(e), String(e)));
    this.expertSelect.addEventListener("change", () => this.choose({ expert: Number(this.expertSelect.value) }));
    this.status = el("span", { className: "an-status muted" });
    this.body = el("div", { className: "an-body" });
    this.root.replaceChildren(
      el("h2", {}, "Routing analysis", tabs),
      el("p", { className: "an-empty muted small" }, "Figures of the run (utilization, the dormant curve, expert tokens, "
        + "locality, vocabulary, router confidence, an expert cache) appear here once it has tokens."),
      el("div", { className: "an-controls" }, el("label", {}, "tokens ", which),
        el("label", {}, "layer ", this.layerSelect), el("label", {}, "expert ", this.expertSelect), this.status),
      this.body);
    this.views = {};
    this.boxes = {};
    const make = { balance: BalanceView, saturation: SaturationView, profile: ProfileView, map: MapView,
      locality: LocalityView, vocabulary: VocabularyView, confidence: ConfidenceView, cache: CacheView };
    for (const [id] of TABS) {
      const box = el("div", { className: "an-panel", dataset: { anPanel: id }, role: "tabpanel" });
      this.body.append(box);
      this.boxes[id] = box;
      this.views[id] = new make[id](box, this.ui);
    }
    this.root.hidden = false;
    this.root.dataset.empty = String(this.state.nTokens === 0);
    this.shown = "";
  }

  choose(change) {
    Object.assign(this.ui, change);
    this.last = -Infinity;           // a choice is shown at once, not throttled
  }

  syncControls() {
    const ui = this.ui;
    for (const b of this.tabButtons) b.setAttribute("aria-selected", String(b.dataset.anTab === ui.tab));   // tabs: selected, not pressed
    for (const b of this.tokenButtons) b.setAttribute("aria-pressed", String(b.dataset.anTokens === ui.tokens));
    for (const [id, box] of Object.entries(this.boxes)) box.hidden = id !== ui.tab;
    this.layerSelect.value = String(ui.row);
    this.expertSelect.value = String(ui.expert);
  }

  update() {
    const s = this.state;
    if (!s.model) return;
    if (this.model !== s.model) this.build(s.model);
    const ui = this.ui, width = this.width || this.root.clientWidth;
    const key = `${s.gen}|${s.applied}|${ui.tab}|${ui.tokens}|${ui.row}|${ui.expert}|${ui.minCount}|${ui.cacheScope}|${width}`;
    if (key === this.shown) { this.analyzer.background(); return; }
    const now = performance.now();
    if (now - this.last < THROTTLE_MS) { this.analyzer.background(); return; }   // at most 4 recomputes a second
    this.shown = key;
    this.last = now;
    this.computes++;
    if (ui.minCountAuto && ui.tab === "vocabulary") ui.minCount = autoMinCount(this.analyzer.selection(ui.tokens));
    this.syncControls();
    const t0 = performance.now();
    const fig = this.analyzer.compute({ tokens: ui.tokens, row: ui.row, expert: ui.expert, minCount: ui.minCount,
      groups: [ui.tab] });
    const t1 = performance.now();
    const pos = `over ${fig.tokens} ${ui.tokens === "all" ? "" : `${ui.tokens} `}token${fig.tokens === 1 ? "" : "s"}`
      + ` (cursor ${s.applied} of ${s.nTokens})`;
    this.status.textContent = pos;
    const box = this.boxes[ui.tab];
    this.root.dataset.empty = String(s.nTokens === 0);
    if (fig.tokens === 0) {
      box.dataset.empty = "true";
      this.status.textContent = `${fig.note} (cursor ${s.applied} of ${s.nTokens})`;
    } else {
      delete box.dataset.empty;
      this.views[ui.tab].render(fig, Math.max(200, width - 30), s);
    }
    this.timing = { tab: ui.tab, compute_ms: t1 - t0, render_ms: performance.now() - t1 };
    this.root.dataset.computeMs = this.timing.compute_ms.toFixed(2);
    this.root.dataset.shown = `${ui.tab}:${fig.tokens}`;
  }

  // Plain-JSON figures at the cursor. opts: tokens ("all" | "prompt" | "generated"),
  // layer (model layer index) and expert for the per-layer figures, minCount, groups
  // (subset of GROUPS); unset ones follow the panel's choices. With timing: true,
  // each group is computed on its own and timed (timing_ms).
  figures(opts = {}) {
    const s = this.state;
    if (!s.model) return null;
    const ui = this.ui, layers = s.model.moe_layers;
    let row = ui.row;
    if (opts.layer !== undefined) {
      row = layers.indexOf(opts.layer);
      if (row < 0) return { error: `layer ${opts.layer} is not a MoE layer; MoE layers are ${layers.join(", ")}` };
    }
    const args = { tokens: opts.tokens ?? ui.tokens, row, expert: opts.expert ?? ui.expert,
      minCount: opts.minCount ?? ui.minCount, groups: opts.groups ?? GROUPS };
    if (!TOKEN_SELECTIONS.includes(args.tokens)) return { error: `tokens must be one of ${TOKEN_SELECTIONS.join(", ")}` };
    if (!(args.expert >= 0 && args.expert < s.E)) return { error: `expert ${args.expert} is outside [0, ${s.E})` };
    let fig;
    const timing = {};
    if (opts.timing) {
      fig = {};
      for (const g of args.groups) {
        const t0 = performance.now();
        Object.assign(fig, this.analyzer.compute({ ...args, groups: [g] }));
        timing[g] = performance.now() - t0;
      }
    } else {
      fig = this.analyzer.compute(args);
    }
    const out = figuresJSON(fig, s.E);
    if (opts.timing) out.timing_ms = timing;
    out.panel = { tab: ui.tab, tokens: ui.tokens, layer: layers[ui.row], expert: ui.expert,
      shown: this.root.dataset.shown || "", computes: this.computes, timing: this.timing };
    return out;
  }
}

// The largest of 10, 5, 3, 2 occurrences that at least 5 token ids reach (2 when none
// does: a token id seen once says nothing about specialization).
const MIN_COUNTS = [10, 5, 3, 2];
function autoMinCount(sel) {
  const occ = new Map();
  for (let t = sel.lo; t < sel.hi; t++) { const id = sel.tokens[t].id; occ.set(id, (occ.get(id) || 0) + 1); }
  const counts = [...occ.values()];
  return MIN_COUNTS.find((m) => counts.filter((c) => c >= m).length >= 5) || 2;
}

// Raw figures -> JSON: matrices nested like numpy's ([L][E], [E][E], [n][L]), NaN -> null.
export function figuresJSON(fig, E) {
  const f = { ...fig }, L = fig.layers.length;
  if (f.utilization) {
    f.utilization = { counts: nest(f.utilization.counts, L, E),
      ...(f.utilization.top1_counts ? { top1_counts: nest(f.utilization.top1_counts, L, E) } : {}) };
  }
  if (f.routing_map) f.routing_map = { top1: nest(f.routing_map.top1, fig.tokens, L) };
  if (f.coactivation) f.coactivation = { ...f.coactivation, counts: nest(f.coactivation.counts, E, E),
    conditional: nest(f.coactivation.conditional, E, E) };
  if (f.transitions) f.transitions = { ...f.transitions, counts: nest(f.transitions.counts, E, E),
    conditional: nest(f.transitions.conditional, E, E) };
  return toJSON(f);
}
