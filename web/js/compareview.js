// The compare card: pick runs from the library, compare them (compare.js), show the
// per-layer table (used experts per run, Jaccard, experts dormant in all), a
// pairwise matrix for more than two runs, each run's dormant share, and the delta
// heatmap of two of them (delta.js); when those two share tokens (a same-token replay,
// a masked rerun of the same prompt), the per-token diff of their routing and their
// texts side by side (tokendiff.js).
import { compareRuns, deltaOf } from "./compare.js";
import { DeltaView } from "./delta.js";
import { tokenDiff } from "./tokendiff.js";
import { quoteToken } from "./special.js";

const fmtJ = (j) => (j === null ? "–" : j.toFixed(3));
const pct = (f) => `${(100 * f).toFixed(1)}%`;

export class CompareView {
  constructor(root, library) {
    const $ = (id) => root.querySelector(`#${id}`);
    this.library = library;
    this.els = {
      list: $("compare-runs"), empty: $("compare-empty"), selected: $("compare-selected"), all: $("compare-all"),
      status: $("compare-status"), result: $("compare-result"), summary: $("compare-summary"),
      table: $("compare-table"), matrixWrap: $("compare-matrix-wrap"), matrix: $("compare-matrix"),
      deltaA: $("delta-a"), deltaB: $("delta-b"),
      td: $("tokendiff"), tdSummary: $("td-summary"), tdTokens: $("td-tokens"), tdDetail: $("td-detail"),
      tdNames: [$("td-a-name"), $("td-b-name")], tdTexts: [$("td-a-text"), $("td-b-text")], tdLayers: $("td-layers"),
    };
    this.tokenDiffResult = null;
    const showToken = (ev) => {
      const span = ev.target.closest && ev.target.closest("[data-t]");
      if (span) this.showTokenDetail(Number(span.dataset.t));
    };
    this.els.tdTokens.addEventListener("mouseover", showToken);
    this.els.tdTokens.addEventListener("click", showToken);
    this.els.tdTokens.addEventListener("focusin", showToken);
    this.delta = new DeltaView($("delta-canvas"), { legend: $("delta-legend") });
    this.checked = new Set();
    this.listVersion = -1;
    this.result = null;          // compareRuns() of the last comparison
    this.figs = [];              // the compared runs' figures, in order
    this.error = null;
    this.seq = 0;                // the latest comparison wins over slower earlier ones
    const e = this.els;
    e.list.addEventListener("change", (ev) => {
      if (!ev.target.matches("input[type=checkbox]")) return;
      if (ev.target.checked) this.checked.add(ev.target.value); else this.checked.delete(ev.target.value);
      this.renderButtons();
    });
    e.selected.addEventListener("click", () => this.compare([...this.checked]));
    e.all.addEventListener("click", () => this.compare(this.library.entries.map((x) => x.key)));
    for (const s of [e.deltaA, e.deltaB]) s.addEventListener("change", () => this.showDelta(Number(e.deltaA.value), Number(e.deltaB.value)));
  }

  update() {
    if (this.library.version !== this.listVersion) this.renderList();
    this.delta.update();
  }

  renderList() {
    this.listVersion = this.library.version;
    const frag = document.createDocumentFragment();
    for (const entry of this.library.entries) {
      const label = document.createElement("label");
      label.className = "crun";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = entry.key;
      box.dataset.name = entry.name;
      box.checked = this.checked.has(entry.key);
      const name = document.createElement("span");
      name.className = "cname";
      name.textContent = entry.name;
      name.title = entry.label || entry.name;
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = `${entry.kind}${entry.nTokens !== null ? ` · ${entry.nTokens} tok` : ""}` +
        `${entry.key === this.library.shownKey ? " · shown" : ""}`;
      label.append(box, name, meta);
      frag.appendChild(label);
    }
    this.els.list.replaceChildren(frag);
    this.els.empty.hidden = this.library.entries.length > 0;
    this.renderButtons();
  }

  renderButtons() {
    this.els.selected.disabled = this.checked.size < 2;
    this.els.all.disabled = this.library.entries.length < 2;
    this.els.all.textContent = `Compare all ${this.library.entries.length > 1 ? this.library.entries.length + " " : ""}runs`;
  }

  setStatus(text, error = false) {
    this.els.status.textContent = text;
    this.els.status.className = `status ${error ? "error" : ""}`;
  }

  async compare(keys) {
    const seq = ++this.seq;
    const entries = keys.map((k) => this.library.get(k)).filter(Boolean);
    this.setStatus(`comparing ${entries.length} runs…`);
    try {
      const figs = await Promise.all(entries.map((e) => this.library.figuresOf(e)));
      if (seq !== this.seq) return;
      const result = compareRuns(figs);
      Object.assign(this, { result, figs, error: null });
      this.render();
      this.setStatus("");
    } catch (err) {
      if (seq !== this.seq) return;
      // no numbers at all on an error: a stale table would read as this comparison's
      Object.assign(this, { result: null, figs: [], error: String(err.message || err).split("\n")[0] });
      this.els.result.hidden = true;
      this.delta.clear();
      this.setStatus(this.error, true);
    }
  }

  render() {
    const r = this.result, e = this.els, multi = r.runs.length > 2;
    e.result.hidden = false;
    // each run's dormant share, then the share dormant in all of them
    const chips = r.runs.map((run, i) => {
      const s = document.createElement("span");
      s.className = "chip";
      s.dataset.run = String(i);
      s.append(`${run.name} `, bold(pct(run.dormantFraction)));
      s.title = `${run.dormant} of ${r.moeLayers.length * r.nExpert} experts never selected over ${run.tokens} tokens`;
      return s;
    });
    const all = document.createElement("span");
    all.id = "compare-dormant-all";
    all.append("dormant in all: ", bold(`${r.dormantInAll.total} of ${r.moeLayers.length * r.nExpert}`),
      ` (${pct(r.dormantInAll.fraction)}) · ${multi ? "mean pairwise" : "mean"} Jaccard `, bold(fmtJ(r.meanJaccard)));
    e.summary.replaceChildren("dormant per run: ", ...chips, document.createElement("br"), all);
    this.renderTable(r, multi);
    this.renderMatrix(r, multi);
    for (const s of [e.deltaA, e.deltaB]) s.replaceChildren(...r.runs.map((run, i) => new Option(run.name, String(i))));
    e.deltaA.value = "0";
    e.deltaB.value = "1";
    this.showDelta(0, 1);
  }

  renderTable(r, multi) {
    const head = ["layer", ...r.runs.map((run) => `used: ${run.name}`), multi ? "Jaccard (pairwise mean)" : "Jaccard", "dormant in all"];
    const thead = document.createElement("thead");
    thead.appendChild(row("th", head));
    const tbody = document.createElement("tbody");
    r.moeLayers.forEach((layer, l) => {
      const tr = row("td", [`L${layer}`, ...r.runs.map((run) => `${run.usedPerLayer[l]}/${r.nExpert}`),
        fmtJ(r.jaccard[l]), String(r.dormantInAll.perLayer[l])]);
      tr.dataset.layer = String(layer);
      const cells = tr.children;
      r.runs.forEach((run, i) => { cells[1 + i].className = "used"; cells[1 + i].title = usedList(this.figs[i], l, r.nExpert); });
      cells[cells.length - 2].className = "jaccard";
      const dormant = cells[cells.length - 1];
      dormant.className = "dormant-all";
      dormant.title = r.dormantInAll.experts[l].length ? `experts ${r.dormantInAll.experts[l].join(", ")}` : "none";
      tbody.appendChild(tr);
    });
    const tfoot = document.createElement("tfoot");
    const total = row("td", ["all", ...r.runs.map((run) => `${run.dormant} dormant`), fmtJ(r.meanJaccard), String(r.dormantInAll.total)]);
    total.dataset.total = "";
    tfoot.appendChild(total);
    this.els.table.replaceChildren(thead, tbody, tfoot);
  }

  renderMatrix(r, multi) {
    this.els.matrixWrap.hidden = !multi;
    if (!multi) { this.els.matrix.replaceChildren(); return; }
    const thead = document.createElement("thead");
    thead.appendChild(row("th", ["", ...r.runs.map((run) => run.name)]));
    const tbody = document.createElement("tbody");
    r.matrix.forEach((line, a) => {
      const tr = row("td", [r.runs[a].name, ...line.map(fmtJ)]);
      tr.firstChild.className = "rname";
      tbody.appendChild(tr);
    });
    this.els.matrix.replaceChildren(thead, tbody);
  }

  showDelta(a, b) {
    if (!this.result || !this.figs[a] || !this.figs[b]) return;
    this.deltaPair = [a, b];
    this.deltaFigures = deltaOf(this.figs[a], this.figs[b]);
    this.delta.show(this.figs[0].model, this.deltaFigures, this.figs[a], this.figs[b]);
    this.showTokenDiff(this.figs[a], this.figs[b]);
  }

  // The per-token diff of runs a and b over the tokens they share, or hidden.
  showTokenDiff(a, b) {
    const e = this.els;
    const d = a.tokens && b.tokens && a.ids && b.ids ? tokenDiff(a, b) : null;
    this.tokenDiffResult = d && d.shared > 0 ? d : null;
    e.td.hidden = !this.tokenDiffResult;
    if (!this.tokenDiffResult) return;
    const pct = (x) => (x === null ? "–" : `${(100 * x).toFixed(1)}%`);
    const k = d.k[0] === d.k[1] ? `top-${d.k[0]}` : `top-${d.k[0]} vs top-${d.k[1]}`;
    e.tdSummary.textContent = `${d.shared} shared tokens (${d.prompt} prompt) · ${k} · same expert set ` +
      `${pct(d.setAgreement)} · mean Jaccard ${d.meanJaccard === null ? "–" : d.meanJaccard.toFixed(3)}`;
    e.tdLayers.replaceChildren(...d.perLayer.map((p) => {
      const s = document.createElement("span");
      s.className = "chip";
      s.dataset.layer = String(p.layer);
      s.textContent = `L${p.layer} ${pct(p.changed)} changed`;
      return s;
    }));
    const frag = document.createDocumentFragment(), L = d.perLayer.length;
    for (const r of d.rows) {
      const s = document.createElement("span");
      s.className = `tdt${r.prompt ? " prompt" : ""}${r.changes.length ? " changed" : ""}`;
      s.dataset.t = String(r.t);
      s.dataset.changed = String(r.changes.length);
      s.tabIndex = 0;
      // more changed layers, stronger colour
      if (r.changes.length) s.style.setProperty("--td", String(0.25 + 0.75 * r.changes.length / L));
      s.textContent = r.text || "\u2009";
      s.title = `#${r.t}: ${r.changes.length ? `${r.changes.length} of ${L} layers changed` : "same experts at every layer"}`;
      frag.appendChild(s);
    }
    e.tdTokens.replaceChildren(frag);
    e.tdDetail.textContent = "hover or click a token: the layers whose experts changed, − removed, + added";
    [a, b].forEach((run, i) => {
      e.tdNames[i].textContent = run.name;
      const tail = d.texts[i];
      e.tdTexts[i].textContent = (d.sharedText ? `…${d.sharedText.slice(-80)}` : "") + (tail ? `⟦${tail}⟧` : "");
      e.tdTexts[i].title = tail ? "the text from where the runs part, in ⟦ ⟧" : "the runs share every token";
    });
  }

  showTokenDetail(t) {
    const d = this.tokenDiffResult, r = d && d.rows[t];
    if (!r) return;
    const parts = r.changes.map((c) => `L${c.layer}: ${[...c.removed.map((x) => `−${x}`), ...c.added.map((x) => `+${x}`)].join(" ")}`);
    this.els.tdDetail.textContent = `#${t} ${quoteToken(r.text)} · ` + (parts.length ? parts.join(" · ") : "same experts at every layer");
  }

  get deltaCanvas() { return this.result ? this.delta.grid.canvas : null; }

  // Plain JSON for window.moeviz.compare(): the figures shown, or the error.
  figures() {
    if (this.error) return { error: this.error };
    const r = this.result;
    if (!r) return null;
    const d = this.deltaFigures, E = r.nExpert;
    return structuredClone({
      error: null, runs: r.runs, moeLayers: r.moeLayers, jaccard: r.jaccard, meanJaccard: r.meanJaccard,
      pairs: r.pairs, matrix: r.matrix, dormantInAll: r.dormantInAll,
      delta: d ? { a: d.a, b: d.b, max: d.max, values: r.moeLayers.map((_, l) => Array.from(d.values.subarray(l * E, (l + 1) * E))) } : null,
      tokenDiff: this.tokenDiffResult,
    });
  }
}

function row(tag, texts) {
  const tr = document.createElement("tr");
  for (const t of texts) {
    const c = document.createElement(tag);
    c.textContent = t;
    tr.appendChild(c);
  }
  return tr;
}

function bold(text) { const b = document.createElement("b"); b.textContent = text; return b; }

function usedList(fig, l, E) {
  const ids = [];
  for (let e = 0; e < E; e++) if (fig.counts[l * E + e] > 0) ids.push(e);
  return `experts used: ${ids.join(", ") || "none"}`;
}
