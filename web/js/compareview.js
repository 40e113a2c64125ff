// The compare card: pick runs from the library, compare them (compare.js), show the
// per-layer table (used experts per run, Jaccard, experts dormant in all), a
// pairwise matrix for more than two runs, each run's dormant share, and the delta
// heatmap of two of them (delta.js).
import { compareRuns, deltaOf } from "./compare.js";
import { DeltaView } from "./delta.js";

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
    };
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
