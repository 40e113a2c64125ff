// Replays: a recorded trace shown in the page. Permalinks (/r/<id> reads
// /api/runs/<id>.moetrace, a long run's ?head=<n> first), exported static sites
// (manifest.json, runs/*.moetrace and a long run's runs/*.head.moetrace; older sites'
// runs/*.json still open) and trace files opened in the page (files.js)
// all end as the page's in-memory trace (tracecheck.js), which RunState.loadTrace
// takes in bulk: the binary form's typed arrays go into the state as they are.
import { parseTraceBytes } from "./files.js";

// A long run's head (the first tokens, drawn while the whole trace arrives): its
// length, as moeviz/trace/partial.py HEAD_TOKENS.
export const HEAD_TOKENS = 1024;

export async function fetchTrace(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  const buffer = await r.arrayBuffer();
  performance.mark("moeviz:trace-fetched");
  const trace = parseTraceBytes(buffer);
  performance.mark("moeviz:trace-parsed");
  return trace;
}

// Static sites: the runs listed in manifest.json, relative to the page.
export async function fetchManifest(url = "manifest.json") {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  const m = await r.json();
  if (!m || m.format !== "moeviz-site") throw new Error(`${url} is not a moeviz site manifest`);
  return m;
}
