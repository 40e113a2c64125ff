// Token-level panels: an expert's token profile, the routing map (tokens x MoE layers
// coloured by top-1 expert) and vocabulary specialization.
import { fitCanvas, expertRGB, rgbCss, COLORS, el, table, fmt, pct } from "./draw.js";
import { packRGB } from "../grid.js";
import { showTooltip, hideTooltip } from "../tooltip.js";

// Token text shown in a cell: whitespace made visible, never HTML.
export function showText(t) {
  if (t === "") return "·";
  return JSON.stringify(t).slice(1, -1).replace(/ /g, "␣");
}

export class ProfileView {
  constructor(root) {
    this.title = el("p", { className: "an-line" });
    this.box = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(el("p", { className: "an-line muted" }, "Click a cell of the cumulative heatmap, or choose the layer "
      + "and expert above. Lift = (share of this expert's tokens) / (share of all tokens): above 1 the expert sees "
      + "the token more often than the text does."), this.title, this.box);
  }

  render(fig) {
    const p = fig.profile;
    this.title.textContent = `Layer ${p.layer} · expert ${p.expert}: routed ${p.tokens_routed} of ${p.tokens_total} `
      + `tokens (${pct(p.share_of_tokens)})${p.note ? ` — ${p.note}` : ""}`;
    this.title.dataset.layer = String(p.layer);
    this.title.dataset.expert = String(p.expert);
    if (!p.top.length) { this.box.replaceChildren(); return; }
    const rows = p.top.map((t) => [el("td", { className: "an-tok", title: `id ${t.id}` }, showText(t.text)),
      String(t.count), String(t.occurrences), pct(t.routed_share), fmt(t.lift, 2)]);
    this.box.replaceChildren(table(["token", "routed here", "occurrences", "share routed here", "lift"], rows));
  }
}

const MAX_COLUMNS = 16000;

export class MapView {
  constructor(root) {
    this.note = el("p", { className: "an-line muted" });
    this.canvas = el("canvas", { className: "an-map" });
    this.scroll = el("div", { className: "an-hscroll", tabIndex: 0, ariaLabel: "routing map" }, this.canvas);
    this.key = el("p", { className: "legend-line an-key" });
    root.append(this.note, this.scroll, this.key);
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", hideTooltip);
  }

  render(fig, width, state) {
    this.fig = fig;
    this.state = state;
    const { tokens: n, layers, n_expert: E } = fig, L = layers.length, top1 = fig.routing_map.top1;
    const stride = Math.ceil(n / MAX_COLUMNS), cols = Math.ceil(n / stride);
    const colW = Math.max(1, Math.min(14, Math.floor((width - 46) / cols)));
    const rowH = Math.max(3, Math.min(14, Math.floor(200 / L)));
    const band = 4, left = 40, top = band + 2;
    const cssW = Math.max(width, left + cols * colW + 6), cssH = top + L * rowH + 20;
    this.canvas.style.width = `${cssW}px`;
    const { ctx, dpr } = fitCanvas(this.canvas, cssW, cssH);
    // the cells as one ImageData in device pixels
    const gx = Math.round(left * dpr), gy = Math.round(top * dpr);
    const gw = Math.max(1, Math.round(cols * colW * dpr)), gh = Math.max(1, Math.round(L * rowH * dpr));
    const img = ctx.createImageData(gw, gh), px = new Uint32Array(img.data.buffer);
    const colors = Uint32Array.from({ length: E }, (_, e) => packRGB(expertRGB(e, E)));
    const xs = Int32Array.from({ length: cols + 1 }, (_, c) => Math.round(c * colW * dpr));
    const line = new Uint32Array(gw);
    for (let l = 0; l < L; l++) {
      for (let c = 0; c < cols; c++) {
        const color = colors[top1[c * stride * L + l]];
        for (let x = xs[c]; x < xs[c + 1]; x++) line[x] = color;
      }
      const y0 = Math.round(l * rowH * dpr), y1 = Math.round((l + 1) * rowH * dpr) - (rowH >= 6 ? 1 : 0);
      for (let y = y0; y < y1; y++) px.set(line, y * gw);
    }
    ctx.putImageData(img, gx, gy);
    // prompt / generated band above: prompt tokens in the prompt colour, generated ones light
    for (let c = 0; c < cols; c++) {
      const t = fig.range[0] + c * stride;
      ctx.fillStyle = state.tokens[t].prompt ? "#3a5a8a" : "#c8d0dc";
      ctx.fillRect(left + c * colW, 0, colW, band);
    }
    ctx.fillStyle = COLORS.muted;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const every = Math.max(1, Math.ceil(11 / rowH));
    for (let l = 0; l < L; l += every) ctx.fillText(`L${layers[l]}`, left - 5, top + (l + 0.5) * rowH);
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`token ${fig.range[0]} →`, left, top + L * rowH + 5);
    this.geom = { left, top, colW, rowH, cols, stride, L };
    this.renderKey(top1, E);
    this.note.textContent = `Top-1 expert (largest gate weight) of each of ${n} tokens (columns) at each MoE layer `
      + `(rows); colour = expert id, band on top: prompt (blue) / generated (light).`
      + (stride > 1 ? ` Every ${stride}th token shown.` : "") + " Hover for details.";
  }

  // Colour key: the experts that are top-1 somewhere, commonest first (a few dozen at
  // most: past that, hover tells the id).
  renderKey(top1, E) {
    const freq = new Map();
    for (const e of top1) freq.set(e, (freq.get(e) || 0) + 1);
    const shown = [...freq].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, 32);
    const items = shown.map(([e]) => {
      const sw = el("span", { className: "sw" });
      sw.style.background = rgbCss(expertRGB(e, E));
      return el("span", { dataset: { expert: String(e) } }, sw, `expert ${e}`);
    });
    const rest = freq.size - shown.length;
    this.key.replaceChildren(el("span", { className: "muted" }, "colour = top-1 expert:"), ...items,
      ...(rest > 0 ? [el("span", { className: "muted" }, `+ ${rest} more (hover the map)`)] : []));
  }

  hover(ev) {
    if (!this.geom) return;
    const { left, top, colW, rowH, cols, stride, L } = this.geom, r = this.canvas.getBoundingClientRect();
    const c = Math.floor((ev.clientX - r.left - left) / colW), l = Math.floor((ev.clientY - r.top - top) / rowH);
    if (c < 0 || c >= cols || l < 0 || l >= L) return hideTooltip();
    const i = c * stride, t = this.fig.range[0] + i, tok = this.state.tokens[t];
    const e = this.fig.routing_map.top1[i * L + l];
    showTooltip(ev, [`token ${t} "${showText(tok.text)}" (${tok.prompt ? "prompt" : "generated"})`,
      `layer ${this.fig.layers[l]}: top-1 expert ${e}`]);
  }
}

export class VocabularyView {
  constructor(root, ui) {
    this.ui = ui;
    this.auto = el("span", { className: "muted" });
    this.input = el("input", { type: "number", min: "1", value: String(ui.minCount), className: "an-mincount" });
    this.input.addEventListener("change", () => {
      const v = Math.max(1, Math.floor(Number(this.input.value) || 1));
      this.input.value = String(v);
      ui.setMinCount(v);
    });
    this.summary = el("p", { className: "an-line" });
    this.box = el("div", { className: "an-scroll", tabIndex: 0 });
    this.top = el("div", { className: "an-scroll", tabIndex: 0 });
    root.append(el("p", { className: "an-line" }, el("label", {}, "token ids seen at least ", this.input, " times"), " ",
      this.auto), this.summary, this.box, this.top);
  }

  render(fig) {
    const sp = fig.specialization, layers = fig.layers;
    if (document.activeElement !== this.input) this.input.value = String(sp.min_count ?? this.ui.minCount);
    this.auto.textContent = this.ui.minCountAuto ? "(chosen for this run's length; set it to fix it)" : "";
    if (!sp.tokens) {
      this.summary.textContent = sp.note;
      this.box.replaceChildren();
      this.top.replaceChildren();
      return;
    }
    this.summary.textContent = `${sp.tokens} token id${sp.tokens === 1 ? "" : "s"} seen ≥ ${sp.min_count} times `
      + `(${sp.occurrences} occurrences): share of their occurrences sent to each one's commonest top-1 expert. `
      + `Uniform random top-1 routing: ${fmt(sp.uniform_baseline)}; the shuffled baseline keeps the layer's `
      + "imbalance — specialization is the excess over it (baselines are seeded simulations).";
    this.box.replaceChildren(table(["layer", "share", "tokens shuffled", "excess"], layers.map((layer, l) =>
      [`L${layer}`, fmt(sp.share[l]), fmt(sp.shuffled_baseline[l]), fmt(sp.share[l] - sp.shuffled_baseline[l])])));
    this.top.replaceChildren(table(["most specialized token", "occurrences", "mean share over layers"],
      sp.most_specialized.map((t) => [el("td", { className: "an-tok", title: `id ${t.id}` }, showText(t.text)),
        String(t.occurrences), fmt(t.mean_share)])));
  }
}
