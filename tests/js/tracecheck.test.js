// The page's trace checks (web/js/tracecheck.js, moetrace.js through files.js
// parseTraceBytes) against moeviz.trace.loads on broken traces of either form
// (tests/write_golden.py): the page refuses exactly what Python refuses, so a file the
// page opens is one `moeviz stats` reads, and its one-line message names the same field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseTraceBytes } from "../../web/js/files.js";
import { TraceError } from "../../web/js/tracecheck.js";
import { golden } from "./golden.js";

const cases = golden("trace-checks.json");

function pageVerdict(b64) {
  const buf = Buffer.from(b64, "base64");
  try {
    parseTraceBytes(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    return null;
  } catch (e) {
    assert.ok(e instanceof TraceError, `not a TraceError: ${e.stack}`);
    return e.message;
  }
}

// The field a message names: its first word when that is a path such as
// `routing.expert_ids[1][0][0]` or `model.n_expert_used`, without the indices (Python
// names the whole array where its reader refuses it, the page the entry).
const field = (msg) => ((/^[a-z_]+(\.[a-z_0-9]+|\[\d+\])+/.exec(msg) || [""])[0]).replace(/\[\d+\]/g, "") || null;

test("the cases cover valid and broken traces of both forms", () => {
  assert.ok(cases.filter((c) => c.error === null).length >= 2 && cases.filter((c) => c.error).length >= 25);
});

for (const c of cases) {
  test(`${c.case}: ${c.error === null ? "accepted" : "refused"} as moeviz.trace.loads does`, () => {
    const got = pageVerdict(c.bytes);
    assert.equal(got === null, c.error === null, `page: ${got}\npython: ${c.error}`);
    if (c.error !== null) {
      assert.ok(!got.includes("\n") && got.length < 300, got);
      assert.equal(field(got), field(c.error), `page: ${got}\npython: ${c.error}`);
    }
  });
}
