// A layer × expert grid on a canvas, shared by the current-token panel and the
// cumulative heatmap. Rows are the model's layers in order (dense layers drawn as
// a labelled band, never as dormant experts); columns are routed experts; shared
// experts get a separate always-on strip on the right.
//
// Views hand it one palette index per cell (Uint8Array, MoE row × expert). The grid
// keeps the grid area's pixels in one ImageData; two ways to update it:
//   paintAll   – every cell (resize, mode change, new run)
//   paintCells – only a list of cells (per-token incremental updates)
// Geometry is in device pixels with integer cell edges, so cells stay crisp at any
// devicePixelRatio and incremental fills never leave seams.
import COLORS from "./colors.json" with { type: "json" };

const BG = "#0e1219";

export function makePalette(stops, n = 256) {
  // stops: [[position 0..1, [r,g,b]], ...]; index 0 is taken by stops[0]
  const u32 = new Uint32Array(n), css = new Array(n);
  for (let i = 0; i < n; i++) {
    const x = i / (n - 1);
    let j = 0;
    while (j < stops.length - 2 && x > stops[j + 1][0]) j++;
    const [x0, c0] = stops[j], [x1, c1] = stops[j + 1];
    const f = x1 > x0 ? Math.min(1, Math.max(0, (x - x0) / (x1 - x0))) : 0;
    const rgb = c0.map((v, k) => Math.round(v + (c1[k] - v) * f));
    u32[i] = packRGB(rgb);
    css[i] = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
  }
  return { u32, css };
}

// ImageData is RGBA bytes; a Uint32Array view over it is little-endian on every
// platform browsers run on, so the packed value reads ABGR.
export function packRGB([r, g, b]) { return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0; }

const DENSE_A = packRGB(COLORS.dense_stripes[0]), DENSE_B = packRGB(COLORS.dense_stripes[1]);   // colors.json
const SHARED_A = packRGB([24, 92, 100]), SHARED_B = packRGB([30, 112, 122]);
const BG_U32 = packRGB([14, 18, 25]);

export class LayerExpertGrid {
  // maxAspect: the widest a cell may be, in row heights. On a wide screen a model
  // with few experts would otherwise get cells four times wider than tall; the grid
  // then keeps its aspect and leaves the rest of the row free.
  constructor(canvas, { palette, maxGridCss = 420, maxRowCss = 26, minRowCss = 2, maxAspect = 2.5 }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.palette = palette;
    this.opts = { maxGridCss, maxRowCss, minRowCss, maxAspect };
    this.model = null;
    this.layout = null;
    // Width comes from a ResizeObserver: reading clientWidth every frame, after the
    // token stream's DOM writes, would force a synchronous layout per token.
    this.cssWidth = 0;
    this.box = canvas.parentElement || canvas;     // the space the grid may take (the canvas is sized to the grid)
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver((entries) => { this.cssWidth = entries[entries.length - 1].contentRect.width; })
        .observe(this.box);
    }
  }

  setModel(model) {
    this.model = model;
    this.rows = model.n_layer;
    this.E = model.n_expert;
    this.moeRows = model.moe_layers.slice();          // MoE row -> model layer (grid row)
    this.shared = model.n_shared_experts || 0;
    this.layout = null;
    this.decorated = false;
  }

  // Recompute geometry when the CSS width or devicePixelRatio changed. Returns true
  // when the canvas was resized (its contents are then gone: the caller repaints).
  fit() {
    if (!this.model) return false;
    const dpr = window.devicePixelRatio || 1;
    if (!this.cssWidth) this.cssWidth = this.box.getBoundingClientRect().width;
    const avail = Math.max(120, Math.floor(this.cssWidth));
    const key = `${avail}@${dpr}`;
    if (this.layout && this.layout.key === key) return false;
    const { maxGridCss, maxRowCss, minRowCss, maxAspect } = this.opts;
    const rowCss = Math.max(minRowCss, Math.min(maxRowCss, maxGridCss / this.rows));
    const m = { left: 52, right: this.shared ? 34 : 8, top: 4, bottom: 18 };
    const cssW = Math.min(avail, Math.ceil(m.left + m.right + this.E * rowCss * maxAspect));
    const gridCssH = rowCss * this.rows;
    const cssH = Math.ceil(m.top + gridCssH + m.bottom);
    this.canvas.style.height = `${cssH}px`;
    this.canvas.style.width = `${cssW}px`;
    this.canvas.width = Math.round(cssW * dpr);
    this.canvas.height = Math.round(cssH * dpr);
    const gx = Math.round(m.left * dpr), gy = Math.round(m.top * dpr);
    const gw = Math.round((cssW - m.left - m.right) * dpr), gh = Math.round(gridCssH * dpr);
    const colX = new Int32Array(this.E + 1), rowY = new Int32Array(this.rows + 1);
    for (let e = 0; e <= this.E; e++) colX[e] = Math.round((e * gw) / this.E);
    for (let r = 0; r <= this.rows; r++) rowY[r] = Math.round((r * gh) / this.rows);
    // a 1-device-pixel gap between cells only where cells are big enough to afford it
    const gapX = gw / this.E >= 6 ? 1 : 0, gapY = gh / this.rows >= 6 ? 1 : 0;
    this.layout = { key, dpr, cssW, cssH, gx, gy, gw, gh, colX, rowY, gapX, gapY, m };
    this.image = this.ctx.createImageData(gw, gh);
    this.decorated = false;               // resizing cleared the canvas
    this.pixels = new Uint32Array(this.image.data.buffer);
    return true;
  }

  // Every cell. The first paint after a resize or a new model also draws the
  // background, dense bands and labels; later ones (a new colour scale, a token
  // with router probabilities) only put back the MoE rows' pixels.
  paintAll(levels) {
    if (!this.layout) this.fit();
    const { gw, colX, rowY, gapX, gapY } = this.layout;
    const px = this.pixels, u32 = this.palette.u32, E = this.E, first = !this.decorated;
    if (first) px.fill(BG_U32);
    const line = this.line && this.line.length === gw ? this.line : (this.line = new Uint32Array(gw));
    const rowOfLayer = new Int32Array(this.rows).fill(-1);
    this.moeRows.forEach((layer, row) => { rowOfLayer[layer] = row; });
    for (let r = 0; r < this.rows; r++) {
      const y0 = rowY[r], y1 = rowY[r + 1] - gapY;
      const moe = rowOfLayer[r];
      if (moe < 0) {                                   // dense layer: diagonal stripes
        if (first) {
          for (let y = y0; y < y1; y++) {
            const o = y * gw;
            for (let x = 0; x < gw; x++) px[o + x] = ((x + y) >> 2) & 1 ? DENSE_A : DENSE_B;
          }
        }
        continue;
      }
      // plain loops: ~1000 pixel writes per row beat E small typed-array fill() calls
      const base = moe * E;
      for (let e = 0; e < E; e++) {
        const color = u32[levels[base + e]], x1 = colX[e + 1];
        let x = colX[e];
        for (const xe = x1 - gapX; x < xe; x++) line[x] = color;
        for (; x < x1; x++) line[x] = BG_U32;
      }
      for (let y = y0; y < y1; y++) px.set(line, y * gw);
    }
    if (first) {
      const ctx = this.ctx;
      ctx.fillStyle = BG;
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      ctx.putImageData(this.image, this.layout.gx, this.layout.gy);
      this.drawDecorations(rowOfLayer);
      this.decorated = true;
    } else {
      this.putRows(this.moeRows, 0, gw);
    }
  }

  // Put back the pixels of these grid rows (any order), columns [x0, x1), one
  // rectangle per run of consecutive rows, so dense-band labels are never overwritten.
  putRows(rows, x0, x1) {
    const { gx, gy, rowY } = this.layout;
    const dirty = this.dirtyRows && this.dirtyRows.length === this.rows ? this.dirtyRows : (this.dirtyRows = new Uint8Array(this.rows));
    for (const r of rows) dirty[r] = 1;
    for (let r = 0; r < this.rows; r++) {
      if (!dirty[r]) continue;
      let end = r;
      while (end + 1 < this.rows && dirty[end + 1]) end++;
      this.ctx.putImageData(this.image, gx, gy, x0, rowY[r], x1 - x0, rowY[end + 1] - rowY[r]);
      dirty.fill(0, r, end + 1);
      r = end;
    }
  }

  // Only these cells (MoE row * E + expert); count limits how many of `cells` to use.
  // Writes their pixels into the same ImageData as paintAll, then puts back one
  // rectangle per run of consecutive MoE rows (so dense-band labels survive). On a
  // software canvas this beats fillRect: a memcpy instead of rasterizing ~1000 rects.
  paintCells(cells, count, levels) {
    if (!count) return;
    const { gw, colX, rowY, gapX, gapY } = this.layout;
    const px = this.pixels, u32 = this.palette.u32, E = this.E, moeRows = this.moeRows;
    let minX = gw, maxX = 0;
    const rows = this.touched && this.touched.length >= count ? this.touched : (this.touched = new Int32Array(count));
    for (let i = 0; i < count; i++) {
      const cell = cells[i], e = cell % E, r = moeRows[(cell - e) / E], color = u32[levels[cell]];
      const x0 = colX[e], x1 = colX[e + 1] - gapX, y1 = rowY[r + 1] - gapY;
      for (let y = rowY[r]; y < y1; y++) for (let o = y * gw + x0, end = y * gw + x1; o < end; o++) px[o] = color;
      if (x0 < minX) minX = x0;
      if (x1 > maxX) maxX = x1;
      rows[i] = r;
    }
    this.putRows(rows.subarray(0, count), minX, maxX);
  }

  drawDecorations(rowOfLayer) {
    const { dpr, gx, gy, gw, gh, rowY, colX } = this.layout;
    const ctx = this.ctx, rows = this.rows;
    const font = (px) => `${Math.round(px * dpr)}px ui-monospace, SFMono-Regular, Menlo, monospace`;
    ctx.textBaseline = "middle";
    // Left margin, top to bottom: "dense" at each band of dense layers, and layer
    // numbers at round steps wherever they do not crowd the previous label.
    const rowCss = gh / dpr / rows, every = Math.max(1, Math.ceil(11 / rowCss)), gap = 11 * dpr;
    ctx.font = font(10);
    ctx.textAlign = "right";
    let lastY = -Infinity;
    for (let r = 0; r < rows; r++) {
      const dense = rowOfLayer[r] < 0;
      if (dense && r > 0 && rowOfLayer[r - 1] < 0) continue;           // inside a band already labelled
      if (dense) {
        let end = r;
        while (end + 1 < rows && rowOfLayer[end + 1] < 0) end++;
        const y0 = gy + rowY[r], y1 = gy + rowY[end + 1], mid = (y0 + y1) / 2;
        ctx.fillStyle = "#c9b27a";
        ctx.fillText("dense", gx - 6 * dpr, mid);
        lastY = mid;
        if (y1 - y0 >= 10 * dpr) {                                        // room for a label in the band
          ctx.textAlign = "left";
          ctx.font = font(Math.min(11, (y1 - y0) / dpr - 2));
          ctx.fillText(`${end > r ? `L${r}–${end}` : `L${r}`} dense FFN — no routed experts`, gx + 8 * dpr, mid);
          ctx.font = font(10);
          ctx.textAlign = "right";
        }
        continue;
      }
      const y = gy + (rowY[r] + rowY[r + 1]) / 2;
      if (r % every || y - lastY < gap) continue;
      ctx.fillStyle = "#7d8799";
      ctx.fillText(`L${r}`, gx - 6 * dpr, y);
      lastY = y;
    }
    // expert axis: ticks at round steps at least 34 css px apart
    const colCss = gw / dpr / this.E;
    const step = niceStep(Math.ceil(34 / colCss));
    ctx.fillStyle = "#7d8799";
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const ty = gy + gh + 4 * dpr;
    for (let e = 0; e < this.E; e += step) ctx.fillText(String(e), gx + (colX[e] + colX[e + 1]) / 2, ty);
    // shared experts: one strip over the MoE rows, always on
    if (this.shared) {
      const sx = gx + gw + 8 * dpr, sw = Math.round(16 * dpr);
      for (let r = 0; r < rows; r++) {
        if (rowOfLayer[r] < 0) continue;
        ctx.fillStyle = r % 2 ? "#1f7882" : "#1a6670";
        ctx.fillRect(sx, gy + rowY[r], sw, rowY[r + 1] - rowY[r] - this.layout.gapY);
      }
      ctx.fillStyle = "#5fc4cf";
      ctx.fillText(`S×${this.shared}`, sx + sw / 2, ty);
    }
    this.sharedX = this.shared ? [gx + gw + 8 * dpr, gx + gw + 24 * dpr] : null;
  }

  // Mouse position (client px) -> what is under it, or null.
  hitTest(clientX, clientY) {
    if (!this.layout) return null;
    const rect = this.canvas.getBoundingClientRect(), { dpr, gx, gy, gw, gh, colX, rowY } = this.layout;
    const x = (clientX - rect.left) * dpr, y = (clientY - rect.top) * dpr;
    if (y < gy || y >= gy + gh) return null;
    const r = upperBound(rowY, y - gy) - 1;
    const layer = Math.min(this.rows - 1, Math.max(0, r));
    const moeRow = this.moeRows.indexOf(layer);
    if (this.sharedX && x >= this.sharedX[0] && x < this.sharedX[1] && moeRow >= 0) return { layer, moeRow, shared: true };
    if (x < gx || x >= gx + gw) return null;
    if (moeRow < 0) return { layer, moeRow: -1, dense: true };
    const e = Math.min(this.E - 1, Math.max(0, upperBound(colX, x - gx) - 1));
    return { layer, moeRow, expert: e };
  }

  // A cell's rectangle in CSS pixels, relative to the canvas (outlines, popovers).
  cellRect(moeRow, expert) {
    if (!this.layout) return null;
    const { dpr, gx, gy, colX, rowY } = this.layout, r = this.moeRows[moeRow];
    return { x: (gx + colX[expert]) / dpr, y: (gy + rowY[r]) / dpr,
      w: (colX[expert + 1] - colX[expert]) / dpr, h: (rowY[r + 1] - rowY[r]) / dpr };
  }

  // Centre of a cell in canvas device pixels (tests read pixels there).
  cellCenter(moeRow, expert) {
    const { gx, gy, colX, rowY } = this.layout, r = this.moeRows[moeRow];
    return { x: Math.floor(gx + (colX[expert] + colX[expert + 1] - 1) / 2), y: Math.floor(gy + (rowY[r] + rowY[r + 1] - 1) / 2) };
  }
}

function upperBound(arr, v) {          // first index with arr[i] > v
  let lo = 0, hi = arr.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] <= v) lo = mid + 1; else hi = mid; }
  return lo;
}

function niceStep(min) {
  for (const s of [1, 2, 4, 8, 16, 32, 64, 128, 256]) if (s >= min) return s;
  return 512;
}
