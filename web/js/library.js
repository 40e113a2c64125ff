// The runs the page knows and can compare: finished live runs, the permalink's run,
// opened trace files and a static site's runs. An entry holds its comparison figures
// (compare.js figuresFrom*) or a loader that produces them on first use, so a
// static site's runs are fetched only when compared.

const SAMPLER = ["temperature", "seed", "max_tokens", "top_p", "top_k"];

export class RunLibrary {
  constructor() {
    this.entries = [];
    this.version = 0;            // bumped on every change: views rebuild their lists
    this.nextKey = 1;
    this.shownKey = null;        // the entry the page shows now, if any
  }

  // kind: "live" | "permalink" | "file" | "site"; label: a longer description;
  // load(name) -> Promise<figures>, for entries whose figures are not at hand yet.
  // settings: the run's, to name a rerun of the same prompt by what differs (seed 1)
  add({ name, kind, label = "", nTokens = null, load = null, settings = null }) {
    const entry = { key: `run-${this.nextKey++}`, name: this.uniqueName(name, settings), kind, label, nTokens, load,
      figures: null, base: name, settings };
    this.entries.push(entry);
    this.version++;
    return entry;
  }

  setFigures(entry, figures) {
    entry.figures = { ...figures, name: entry.name };
    entry.nTokens = figures.nTokens;
    this.version++;
  }

  async figuresOf(entry) {
    if (!entry.figures) this.setFigures(entry, await entry.load(entry.name));
    return entry.figures;
  }

  setShown(entry) { this.shownKey = entry ? entry.key : null; this.version++; }

  get(key) { return this.entries.find((e) => e.key === key) || null; }

  // Names label table columns and the JSON figures: keep them distinct.
  // A name already taken gets what differs from the first run of that name (sampler
  // settings: "seed 1", "temperature 0"), else a number.
  uniqueName(name, settings = null) {
    const taken = new Set(this.entries.map((e) => e.name));
    if (!taken.has(name)) return name;
    const first = this.entries.find((e) => e.base === name && e.settings);
    if (first && settings) {
      const diff = SAMPLER.filter((k) => settings[k] !== undefined && settings[k] !== first.settings[k])
        .map((k) => `${k.replace("_", " ")} ${settings[k]}`);
      const named = diff.length ? `${name} · ${diff.join(", ")}` : "";
      if (named && !taken.has(named)) return named;
    }
    let i = 2;
    while (taken.has(`${name} (${i})`)) i++;
    return `${name} (${i})`;
  }
}
