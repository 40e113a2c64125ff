// Header figures: TOTAL_P and ACTIVE_P from the model, the current TOKEN, and
// EXPERTS_HIT (distinct layer-expert pairs selected so far).

export function formatParams(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  for (const [unit, v] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
    if (n >= v) return `${(n / v).toFixed(n >= 100 * v ? 0 : n >= 10 * v ? 1 : 2)}${unit}`;
  }
  return String(n);
}

export class HeaderView {
  constructor(els, state) {
    this.els = els;            // {name, arch, total, active, token, tokenText, hit, sharedNote}
    this.state = state;
    this.last = {};
  }

  set(key, text) {
    if (this.last[key] !== text && this.els[key]) { this.els[key].textContent = text; this.last[key] = text; }
  }

  update() {
    const s = this.state, m = s.model;
    if (!m) return;
    this.set("name", m.name);
    this.set("arch", `${m.architecture} · ${m.moe_layers.length}×${m.n_expert} experts · top-${m.n_expert_used}` +
      (m.n_shared_experts ? ` · ${m.n_shared_experts} shared` : ""));
    this.set("total", formatParams(m.total_params));
    this.set("active", formatParams(m.active_params));
    this.set("token", `${s.applied} / ${s.nTokens}`);
    const t = s.applied - 1;
    this.set("tokenText", t >= 0 ? JSON.stringify(s.tokens[t].text) : "");
    this.set("hit", `${s.hit.both} / ${s.L * s.E}`);
    this.set("sharedNote", m.n_shared_experts
      ? `· S strip: ${m.n_shared_experts} shared expert${m.n_shared_experts === 1 ? "" : "s"} per MoE layer, always on` : "");
    if (this.els.total) this.els.total.title = `${m.total_params} parameters`;
    if (this.els.active) this.els.active.title = `${m.active_params} parameters active per token`;
  }
}
