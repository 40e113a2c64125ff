// Small canvas helpers for the analysis panels: sizing at devicePixelRatio, axes,
// line plots, bar charts, matrices and a categorical colour per expert. Drawing is
// in CSS pixels (the context is scaled); colours follow web/css/moeviz.css.
import { makePalette } from "../grid.js";
import { HEAT_PALETTE } from "../heatmap.js";

export const COLORS = { fg: "#d9dfe9", muted: "#7d8799", grid: "#222a37", bg: "#0e1219", accent: "#f0a23b",
  accent2: "#5fc4cf", baseline: "#9aa6ba", dormant: "#161b26" };
export const FONT = "10px ui-monospace, SFMono-Regular, Menlo, monospace";
export { HEAT_PALETTE };
// 0..1 shares (co-activation, transitions): dark blue to pale cyan
export const SHARE_PALETTE = makePalette([[0, [18, 23, 33]], [0.02, [26, 40, 70]], [0.35, [40, 96, 150]],
  [0.7, [70, 170, 190]], [1, [220, 250, 250]]]);

// Size the canvas to its CSS width (given) and `cssHeight`; returns a context in CSS px.
export function fitCanvas(canvas, cssWidth, cssHeight) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(60, Math.floor(cssWidth)), h = Math.max(20, Math.floor(cssHeight));
  canvas.style.height = `${h}px`;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(0, 0, w, h);
  ctx.font = FONT;
  return { ctx, w, h, dpr };
}

// Categorical colour of expert e of E: hues spread by the golden angle, three lightness
// bands so neighbours differ. Returns [r, g, b].
export function expertRGB(e, E) {
  const hue = (e * 137.508) % 360, light = [0.62, 0.48, 0.74][e % 3], sat = E > 24 ? 0.62 : 0.7;
  return hslToRgb(hue / 360, sat, light);
}

function hslToRgb(h, s, l) {
  const q = l < 0.5 ? l * (1 + s) : l + s - l * s, p = 2 * l - q;
  const f = (t) => {
    t = (t + 1) % 1;
    if (t < 1 / 6) return p + (q - p) * 6 * t;
    if (t < 1 / 2) return q;
    if (t < 2 / 3) return p + (q - p) * (2 / 3 - t) * 6;
    return p;
  };
  return [f(h + 1 / 3), f(h), f(h - 1 / 3)].map((v) => Math.round(v * 255));
}

export const rgbCss = ([r, g, b]) => `rgb(${r},${g},${b})`;

// A plot area with axes. x: {min, max, log}, y: {min, max}; labels as strings.
export function axes(ctx, w, h, { x, y, xLabel = "", yLabel = "", xTicks = [], yTicks = [], fmtX = String,
  fmtY = String, m = { left: 40, right: 10, top: 8, bottom: 28 } }) {
  const area = { x0: m.left, x1: w - m.right, y0: m.top, y1: h - m.bottom };
  const sx = (v) => {
    const f = x.log ? (Math.log(v) - Math.log(x.min)) / (Math.log(x.max) - Math.log(x.min) || 1)
      : (v - x.min) / (x.max - x.min || 1);
    return area.x0 + f * (area.x1 - area.x0);
  };
  const sy = (v) => area.y1 - ((v - y.min) / (y.max - y.min || 1)) * (area.y1 - area.y0);
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = COLORS.muted;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of yTicks) {
    const yy = Math.round(sy(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(area.x0, yy); ctx.lineTo(area.x1, yy); ctx.stroke();
    ctx.fillText(fmtY(v), area.x0 - 4, yy);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of xTicks) {
    const xx = Math.round(sx(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, area.y1); ctx.lineTo(xx, area.y1 + 3); ctx.stroke();
    ctx.fillText(fmtX(v), xx, area.y1 + 5);
  }
  if (xLabel) { ctx.fillText(xLabel, (area.x0 + area.x1) / 2, area.y1 + 16); }
  if (yLabel) {
    ctx.save(); ctx.translate(10, (area.y0 + area.y1) / 2); ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = "middle"; ctx.fillText(yLabel, 0, 0); ctx.restore();
  }
  ctx.strokeStyle = "#33405a";
  ctx.beginPath(); ctx.moveTo(area.x0 + 0.5, area.y0); ctx.lineTo(area.x0 + 0.5, area.y1 + 0.5);
  ctx.lineTo(area.x1, area.y1 + 0.5); ctx.stroke();
  return { area, sx, sy };
}

// Polyline through (xs[i], ys[i]); null/NaN values break the line.
export function line(ctx, sx, sy, xs, ys, { color, width = 1.5, dash = [], dots = false }) {
  ctx.strokeStyle = color; ctx.lineWidth = width; ctx.setLineDash(dash);
  ctx.beginPath();
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (v === null || Number.isNaN(v)) { pen = false; continue; }
    const px = sx(xs[i]), py = sy(v);
    if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
    pen = true;
  }
  ctx.stroke();
  ctx.setLineDash([]);
  if (dots) {
    ctx.fillStyle = color;
    for (let i = 0; i < xs.length; i++) if (ys[i] !== null && !Number.isNaN(ys[i])) ctx.fillRect(sx(xs[i]) - 1.5, sy(ys[i]) - 1.5, 3, 3);
  }
}

// Round tick values for [0, max]: about `n` of them.
export function niceTicks(max, n = 4) {
  if (!(max > 0)) return [0];
  const raw = max / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const out = [];
  for (let v = 0; v <= max + 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

export function logTicks(max) {
  const out = [];
  for (let v = 1; v <= max; v *= 10) out.push(v);
  return out;
}

// An E x E matrix of values in [0, 1] (NaN: nothing to show) as square cells; with
// diagonal: false the diagonal (always 1 for co-activation) is drawn as a grid line.
export function matrix(ctx, values, E, x0, y0, size, { palette = SHARE_PALETTE, diagonal = true } = {}) {
  const cell = size / E;
  for (let a = 0; a < E; a++) {
    for (let b = 0; b < E; b++) {
      const v = values[a * E + b];
      ctx.fillStyle = !diagonal && a === b ? "#2a3242" : Number.isNaN(v) ? COLORS.dormant
        : palette.css[Math.max(0, Math.min(255, Math.round(v * 255)))];
      ctx.fillRect(x0 + b * cell, y0 + a * cell, Math.ceil(cell), Math.ceil(cell));
    }
  }
}

export const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "n/a" : x.toFixed(d));
export const pct = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? "n/a" : `${(100 * x).toFixed(d)}%`);

// Build an element: el("td", {className: "x"}, "text" | node, ...)
export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// A table from a header row and body rows of cells (strings or nodes).
export function table(head, rows, { className = "an-table" } = {}) {
  const t = el("table", { className });
  const tr = el("tr");
  for (const h of head) tr.append(h instanceof Node ? h : el("th", {}, h));
  t.append(el("thead", {}, tr));
  const body = el("tbody");
  for (const r of rows) {
    const row = r instanceof Node ? r : el("tr", {}, ...r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
    body.append(row);
  }
  t.append(body);
  return t;
}
