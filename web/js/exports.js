// Exports of what the page shows: a canvas as PNG, selection counts as CSV.
import { downloadBlob } from "./files.js";

export function canvasToPNG(canvas) {
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the canvas could not be encoded as PNG"))), "image/png");
  });
}

export async function downloadCanvasPNG(canvas, filename) {
  downloadBlob(await canvasToPNG(canvas), filename);
}

// A heatmap as a picture that says what it is: the canvas as drawn, at its own pixels,
// under the run's title, its model and the dormant figure, over a legend (the dormant
// colour, the ramp and what it counts). Sizes follow the canvas' device pixels.
// captions: {title, model, figure, legend: [[css colour or [css stops], text], ...]}
export const CAPTION = { pad: 16, head: 64, foot: 36 };
export function captionedCanvas(canvas, { title, model, figure, legend = [] }) {
  const s = Math.max(1, canvas.width / (canvas.getBoundingClientRect().width || canvas.width));
  const pad = Math.round(CAPTION.pad * s), head = Math.round(CAPTION.head * s), foot = Math.round(CAPTION.foot * s);
  const out = document.createElement("canvas");
  out.width = canvas.width + 2 * pad;
  out.height = canvas.height + head + foot;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#0b0e14";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = "#f0a23b";
  ctx.fillRect(0, 0, out.width, Math.round(3 * s));
  ctx.textBaseline = "top";
  const fit = (text, width) => {          // cut with … to fit
    let t = text;
    while (t.length > 1 && ctx.measureText(t).width > width) t = t.slice(0, -2) + "…";
    return t;
  };
  ctx.font = `600 ${Math.round(18 * s)}px ui-monospace, monospace`;
  ctx.fillStyle = "#e6eaf2";
  ctx.fillText(fit(title, out.width - 2 * pad), pad, Math.round(12 * s));
  ctx.font = `${Math.round(13 * s)}px ui-monospace, monospace`;
  const fw = ctx.measureText(figure).width;
  ctx.fillStyle = "#f0a23b";
  ctx.fillText(figure, out.width - pad - fw, Math.round(40 * s));
  ctx.fillStyle = "#7d8799";
  ctx.fillText(fit(model, out.width - 3 * pad - fw), pad, Math.round(40 * s));
  ctx.drawImage(canvas, pad, head);
  let x = pad;
  const y = head + canvas.height + Math.round(12 * s), box = Math.round(12 * s);
  for (const [color, text] of legend) {
    if (Array.isArray(color)) {
      const g = ctx.createLinearGradient(x, 0, x + 6 * box, 0);
      color.forEach((c, i) => g.addColorStop(i / (color.length - 1), c));
      ctx.fillStyle = g;
      ctx.fillRect(x, y, 6 * box, box);
      x += 6 * box + Math.round(6 * s);
    } else {
      ctx.fillStyle = color;
      ctx.fillRect(x, y, box, box);
      x += box + Math.round(6 * s);
    }
    ctx.fillStyle = "#7d8799";
    ctx.fillText(text, x, y);
    x += ctx.measureText(text).width + Math.round(18 * s);
  }
  return out;
}

// `layer,expert,count`, one line per (MoE layer, expert); layer is the model's layer
// index (model.moe_layers), so dense layers have no lines. counts: [n_moe_layers * E].
export function countsCSV(model, counts) {
  const E = model.n_expert, lines = ["layer,expert,count"];
  model.moe_layers.forEach((layer, row) => {
    for (let e = 0; e < E; e++) lines.push(`${layer},${e},${counts[row * E + e]}`);
  });
  return lines.join("\n") + "\n";
}

export function downloadCountsCSV(model, counts, filename) {
  downloadBlob(new Blob([countsCSV(model, counts)], { type: "text/csv" }), filename);
}
