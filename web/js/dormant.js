// Dormant experts: routed experts never selected so far, per MoE layer and overall,
// over all tokens, the prompt's or the generated ones (figures.js). Dense layers are
// listed as dense, not counted: they have no routed experts to be dormant.
//
// The tokens toggle is the page's: the heatmap follows it too (onTokens). Before any
// token there is nothing to count, and the card says so instead of "all dormant".
import { tokensWord } from "./figures.js";

export class DormantView {
  constructor(root, state, { onTokens } = {}) {
    this.state = state;
    this.root = root;
    this.onTokens = onTokens || (() => {});
    this.tokens = "all";
    this.countEl = root.querySelector("#dormant-count");
    this.ofEl = root.querySelector("#dormant-of");
    this.pctEl = root.querySelector("#dormant-pct");
    this.tokensEl = root.querySelector("#dormant-tokens");
    this.maskedEl = root.querySelector("#dormant-masked");
    this.list = root.querySelector("#dormant-layers");
    this.buttons = [...document.querySelectorAll("[data-tokens]")];     // this card's and the heatmap's
    for (const b of this.buttons) b.addEventListener("click", () => this.setTokens(b.dataset.tokens));
    this.model = null;
    this.rows = [];              // per MoE row: {val, fill, last}
    this.key = "";
  }

  setTokens(sel) {
    this.tokens = sel;
    for (const b of this.buttons) b.setAttribute("aria-pressed", String(b.dataset.tokens === sel));
    this.key = "";
    this.onTokens(sel);
  }

  build(model) {
    this.model = model;
    this.rows = [];
    const frag = document.createDocumentFragment();
    const moeRowOf = new Map(model.moe_layers.map((layer, row) => [layer, row]));
    for (let layer = 0; layer < model.n_layer; layer++) {
      const row = document.createElement("div");
      row.className = "drow";
      const name = document.createElement("span");
      name.className = "dname";
      name.textContent = `L${layer}`;
      row.appendChild(name);
      if (!moeRowOf.has(layer)) {
        row.classList.add("dense");
        const note = document.createElement("span");
        note.className = "dnote";
        note.textContent = "dense — not routed";
        row.appendChild(note);
      } else {
        row.dataset.layer = String(layer);
        const bar = document.createElement("span"), fill = document.createElement("span"), val = document.createElement("span");
        bar.className = "dbar"; fill.className = "dfill"; val.className = "dval";
        bar.appendChild(fill);
        row.append(bar, val);
        this.rows.push({ val, fill, row, last: -1 });
      }
      frag.appendChild(row);
    }
    this.list.replaceChildren(frag);
    this.key = "";
  }

  update() {
    const s = this.state;
    if (!s.model) return;
    if (this.model !== s.model) this.build(s.model);
    // redraw only when the figures moved (checked before building the per-layer array)
    const key = `${s.gen}:${this.tokens}:${s.hit[this.tokens]}:${s.appliedOf[this.tokens]}:${s.nTokens > 0}`;
    if (key === this.key) return;
    this.key = key;
    const d = s.dormant(this.tokens);
    const all = s.L * s.E - d.masked;     // masked experts could not be chosen: not dormant
    // no run yet: the figures would claim every expert dormant "over 0 tokens"
    if (s.nTokens === 0) this.root.dataset.empty = "true"; else delete this.root.dataset.empty;
    this.countEl.textContent = String(d.total);
    this.ofEl.textContent = String(all);
    this.pctEl.textContent = `${(100 * d.fraction).toFixed(1)}%`;
    this.tokensEl.textContent = d.tokens ? `over ${d.tokens} ${tokensWord(this.tokens, d.tokens !== 1)}`
      : `— no ${tokensWord(this.tokens)} counted yet`;
    this.maskedEl.hidden = d.masked === 0;
    this.maskedEl.textContent = d.masked ? `· ${d.masked} masked by the run (not counted)` : "";
    for (let l = 0; l < this.rows.length; l++) {
      const r = this.rows[l], v = d.perLayer[l], m = d.maskedPerLayer[l], open = s.E - m;
      if (r.last === `${v}/${m}`) continue;
      r.last = `${v}/${m}`;
      r.val.textContent = `${v} · ${open ? ((100 * v) / open).toFixed(0) : 0}%${m ? ` + ${m} masked` : ""}`;
      r.fill.style.width = `${open ? (100 * v) / open : 0}%`;
      r.row.dataset.dormant = String(v);
      r.row.dataset.masked = String(m);
    }
  }
}
