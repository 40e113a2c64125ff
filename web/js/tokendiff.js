// Per-token diff of two runs over the tokens they share (the page's side of `moeviz
// diff`, docs/analysis.md "Diff"): a same-token replay shares every token; a masked
// rerun of a prompt shares the prompt and the generated tokens up to where its text
// went another way. Per shared token and MoE layer: the same expert set or not, the
// experts removed (in A, not in B) and added, and the Jaccard index of the two sets;
// the runs' texts side by side from where they part. Pure data: no DOM here.
//
// A run here is a comparison figure (compare.js) with its routing: {name, model,
// tokens [{id, text, prompt}], ids: flat [n * L * K], K, settings}.

export function sharedTokens(a, b) {
  const n = Math.min(a.tokens.length, b.tokens.length);
  let i = 0;
  while (i < n && a.tokens[i].id === b.tokens[i].id) i++;
  return i;
}

export function tokenDiff(a, b) {
  const shared = sharedTokens(a, b);
  const layers = a.model.moe_layers, L = layers.length, ka = a.K, kb = b.K;
  const rows = [], changedPerLayer = new Array(L).fill(0), jaccardPerLayer = new Array(L).fill(0);
  let same = 0, jaccardSum = 0;
  for (let t = 0; t < shared; t++) {
    const changes = [];
    let jt = 0;
    for (let l = 0; l < L; l++) {
      const A = Array.from(a.ids.subarray((t * L + l) * ka, (t * L + l + 1) * ka));
      const B = Array.from(b.ids.subarray((t * L + l) * kb, (t * L + l + 1) * kb));
      const sa = new Set(A), sb = new Set(B);
      const removed = A.filter((e) => !sb.has(e)).sort((x, y) => x - y);
      const added = B.filter((e) => !sa.has(e)).sort((x, y) => x - y);
      const inter = A.length - removed.length, j = inter / (sa.size + sb.size - inter);
      jt += j;
      jaccardPerLayer[l] += j;
      if (removed.length || added.length || sa.size !== sb.size) {
        changes.push({ row: l, layer: layers[l], removed, added });
        changedPerLayer[l]++;
      } else {
        same++;
      }
    }
    jaccardSum += jt;
    rows.push({ t, id: a.tokens[t].id, text: a.tokens[t].text, prompt: a.tokens[t].prompt, changes,
      jaccard: L ? jt / L : 1 });
  }
  const pairs = shared * L;
  return {
    a: a.name, b: b.name, shared, tokens: [a.tokens.length, b.tokens.length], k: [ka, kb],
    prompt: a.tokens.filter((t) => t.prompt).length,
    setAgreement: pairs ? same / pairs : null, meanJaccard: pairs ? jaccardSum / pairs : null,
    perLayer: layers.map((layer, l) => ({ layer, changed: shared ? changedPerLayer[l] / shared : null,
      jaccard: shared ? jaccardPerLayer[l] / shared : null })),
    rows,
    // each run's text from the first token they do not share (the prompt is shared)
    texts: [textFrom(a, shared), textFrom(b, shared)],
    sharedText: a.tokens.slice(0, shared).filter((t) => !t.prompt).map((t) => t.text).join(""),
  };
}

function textFrom(run, i) {
  return run.tokens.slice(i).map((t) => t.text).join("");
}
