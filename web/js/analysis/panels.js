// Analysis panels: filled in by the analysis-panels work (issue 6). Interface used
// by main.js: mountAnalysis({root, state, heatmap}) -> {update(), figures(opts)}.
export function mountAnalysis({ root }) {
  root.hidden = true;
  return { update() {}, figures() { return null; } };
}
