// Replays: a trace (docs/trace-format.md, JSON form) cut into the very messages a
// live run sends, so the same state and views show it. Used for permalinks
// (/r/<id> reads /api/runs/<id>), exported static sites (manifest.json) and trace
// files opened in the page (files.js). Routing rows may be nested arrays (JSON form)
// or typed-array views (a .moetrace file, moetrace.js): both index as ids[t][l][k].

export function traceToMessages(trace, runId = null) {
  if (!trace || trace.format !== "moeviz-trace") throw new Error("not a moeviz trace");
  const { expert_ids: ids, weights, probs } = trace.routing;
  const tokens = trace.tokens;
  let nPrompt = 0;
  while (nPrompt < tokens.length && tokens[nPrompt].prompt) nPrompt++;
  const finish = trace.finish || { reason: "length" };
  const msgs = [
    { type: "model", model: trace.model },
    { type: "start", run: runId, prompt: trace.prompt, settings: trace.settings || {} },
    { type: "prompt", tokens: tokens.slice(0, nPrompt), expert_ids: ids.slice(0, nPrompt),
      weights: weights.slice(0, nPrompt), seconds: finish.prefill_seconds || 0,
      ...(probs ? { probs: probs.slice(0, nPrompt) } : {}) },
  ];
  const perToken = tokens.length > nPrompt ? (finish.decode_seconds || 0) / (tokens.length - nPrompt) : 0;
  for (let i = nPrompt; i < tokens.length; i++) {
    msgs.push({ type: "token", index: i, token: tokens[i], expert_ids: ids[i], weights: weights[i],
      seconds: perToken, ...(probs ? { probs: probs[i] } : {}) });
  }
  msgs.push({ type: "done", finish: { n_prompt: nPrompt, n_generated: tokens.length - nPrompt, ...finish }, summary: {} });
  return msgs;
}

export async function fetchTrace(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  return r.json();
}

// Static sites: the runs listed in manifest.json, relative to the page.
export async function fetchManifest(url = "manifest.json") {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  const m = await r.json();
  if (!m || m.format !== "moeviz-site") throw new Error(`${url} is not a moeviz site manifest`);
  return m;
}
