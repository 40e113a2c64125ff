// The analysis panels' figures (web/js/analysis/) against moeviz.analysis on real
// recorded traces: the demo model and fixture models of other shapes, at the end of the
// run and at a cursor a few tokens into the generated ones, over all, prompt or
// generated tokens (tests/write_golden.py writes what Python gives).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { RunState } from "../../web/js/state.js";
import { Analyzer } from "../../web/js/analysis/compute.js";
import { figuresJSON } from "../../web/js/analysis/panels.js";
import { GOLDEN, differences, golden, goldenTrace } from "./golden.js";

// Where numpy's order of operations differs from the page's loops, equal up to
// rounding (measured: at most a few units in the last place); everything else exact.
const ROUNDING = 1e-13;
const CLOSE = [
  // entropies: Σ p log p summed pairwise by numpy, in a loop here; a token's router
  // entropy as ln(total) - Σ p ln p / total here (one pass), from the normalized scores there
  /\.normalized_entropy\[/, /^figures\.confidence\.entropy\./,
  // (1 - k/E)^t: numpy's power against Math.pow
  /\.uniform_expected(_fraction)?(\[|$)/,
  // mutual information: Σ p log2(p / (pa pb)) in another order
  /\.mutual_information_bits\[/,
].map((re) => [re, ROUNDING]);

// The simulated baselines (shuffled token orders, uniform draws) use the page's own
// seeded generator: its estimate and Python's are two means of the same draws' law.
// Both are held to Python's spread: |page - python| <= Z standard errors of the
// difference (sd of Python's draws * sqrt(2 / draws)), plus rounding.
const Z = 6;

function noisyDifferences(fig, draws) {
  const out = [];
  for (const [path, perValue] of Object.entries(draws)) {
    const [group, key] = path.split(".");
    const got = fig[group][key], values = Array.isArray(got) ? got : [got];
    perValue.forEach((d, i) => {
      const mean = d.reduce((a, b) => a + b, 0) / d.length;
      const sd = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, d.length - 1));
      const bound = Z * sd * Math.sqrt(2 / d.length) + 1e-12;
      if (!(Math.abs(values[i] - mean) <= bound)) {
        out.push(`${path}[${i}]: page ${values[i]} vs python ${mean} (allowed ±${bound.toExponential(2)})`);
      }
    });
  }
  return out;
}

const files = readdirSync(GOLDEN).filter((f) => f.endsWith(".figures.json")).sort();

test("the goldens cover the traces", () => {
  assert.ok(files.length >= 4, files.join(", "));
});

for (const file of files) {
  const { trace: rel, cases } = golden(file);
  test(`${rel}: the page's figures equal moeviz.analysis`, () => {
    const trace = goldenTrace(rel);
    const state = new RunState();
    state.loadTrace(trace);
    for (const c of cases) {
      state.applyTo(c.applied);
      const layers = trace.model.moe_layers, row = layers.indexOf(c.layer);
      const fig = figuresJSON(new Analyzer(state).compute({ tokens: c.tokens, row, expert: c.expert,
        minCount: c.minCount }), state.E);
      const where = `${rel} at ${c.applied}, ${c.tokens} tokens, layer ${c.layer}, expert ${c.expert}`;
      assert.equal(fig.tokens, c.n, where);
      assert.deepEqual([fig.layer, fig.expert, fig.layers], [c.layer, c.expert, layers], where);
      const noisy = new Set(Object.keys(c.draws));
      const exact = structuredClone(c.figures);
      for (const path of noisy) { const [g, k] = path.split("."); delete exact[g][k]; }
      const diffs = [...differences(fig, exact, "figures", CLOSE), ...noisyDifferences(fig, c.draws)];
      assert.deepEqual(diffs, [], `${where}:\n${diffs.slice(0, 20).join("\n")}`);
    }
  });
}
