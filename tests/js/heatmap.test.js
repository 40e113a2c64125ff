// The heatmap's colours: the page's palette and log-scale levels (web/js/heatmap.js)
// against moeviz/preview.py's share image (tests/golden/heatmap.json), both drawn from
// web/js/colors.json: a link's preview shows the colours the page does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { HEAT_PALETTE, heatLevel } from "../../web/js/heatmap.js";
import { golden } from "./golden.js";

const want = golden("heatmap.json");
const unpack = (u) => [u & 255, (u >>> 8) & 255, (u >>> 16) & 255];    // grid.js packRGB: ImageData's byte order

test("the palette is preview.py's, entry by entry", () => {
  assert.equal(HEAT_PALETTE.u32.length, 256);
  assert.deepEqual(Array.from(HEAT_PALETTE.u32, unpack), want.palette);
  assert.deepEqual(want.palette[0], JSON.parse(readFileSync(new URL("../../web/js/colors.json", import.meta.url))).heat_stops[0][1]);
});

test("counts get preview.py's palette index at every scale", () => {
  for (const { scale, counts, levels } of want.levels) {
    assert.deepEqual(counts.map(heatLevel(scale)), levels, `scale ${scale}`);
  }
  assert.ok(want.levels.some((l) => l.levels.includes(255)) && want.levels.every((l) => l.levels[0] === 0));
});
