// What the node tests share: the golden files tests/write_golden.py writes from
// moeviz.analysis, moeviz.trace and moeviz.preview (tests/golden/), read the way the
// page reads a file, and one comparison of the page's JSON against Python's.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseTraceBytes } from "../../web/js/files.js";

export const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), "..", "golden");

export function golden(name) {
  return JSON.parse(readFileSync(join(GOLDEN, name), "utf8"));
}

// A golden trace as the page's in-memory trace (files.js: either form, checked).
export function goldenTrace(rel) {
  const buf = readFileSync(join(GOLDEN, rel));
  return parseTraceBytes(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

// Differences between the page's JSON `got` and Python's `want`, on every key Python
// has (`moe_layers` aside: the page labels layers once, in `layers`). Numbers must be
// equal, except at paths matching one of `close` ([regexp, relative tolerance]): figures
// whose arithmetic runs in another order in numpy (pairwise sums, log of a quotient),
// equal up to rounding.
export function differences(got, want, path = "figures", close = [], out = []) {
  if (want === null || typeof want !== "object") {
    if (typeof want === "number" && typeof got === "number" && got !== want) {
      const tol = close.find(([re]) => re.test(path));
      const rel = Math.abs(got - want) / Math.max(Math.abs(want), Number.MIN_VALUE);
      if (!tol || !(rel <= tol[1])) out.push(`${path}: page ${got} != python ${want} (relative ${rel.toExponential(1)})`);
    } else if (got !== want) {
      out.push(`${path}: page ${JSON.stringify(got)} != python ${JSON.stringify(want)}`);
    }
    return out;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) {
      out.push(`${path}: page ${JSON.stringify(got)?.slice(0, 80)} is not a list of ${want.length}`);
      return out;
    }
    want.forEach((w, i) => differences(got[i], w, `${path}[${i}]`, close, out));
    return out;
  }
  if (got === null || typeof got !== "object") {
    out.push(`${path}: page ${JSON.stringify(got)} is not an object`);
    return out;
  }
  for (const [k, w] of Object.entries(want)) {
    if (k === "moe_layers") continue;
    if (!(k in got)) out.push(`${path}.${k} is missing from the page's figures`);
    else differences(got[k], w, `${path}.${k}`, close, out);
  }
  return out;
}
