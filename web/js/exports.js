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
