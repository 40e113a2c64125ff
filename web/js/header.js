import { quoteToken } from "./special.js";

// Header figures: parameters (TOTAL_P) and active per token (ACTIVE_P) from the model,
// the current token, experts used (EXPERTS_HIT: distinct layer-expert pairs selected
// so far) and dormant (the dormant card's figure, in view without scrolling).

export function formatParams(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  for (const [unit, v] of [["T", 1e12], ["B", 1e9], ["M", 1e6], ["K", 1e3]]) {
    if (n >= v) return `${(n / v).toFixed(n >= 100 * v ? 0 : n >= 10 * v ? 1 : 2)}${unit}`;
  }
  return String(n);
}

// TOKEN is the token the panel shows when one is pinned (the pin is a reader's
// choice), else the playback cursor.
export class HeaderView {
  // dormantTokens(): the token selection the dormant card counts
  constructor(els, state, { pinned, dormantTokens } = {}) {
    this.els = els;            // {name, arch, total, active, token, tokenText, hit, dormant, sharedNote}
    this.state = state;
    this.pinnedOf = pinned || (() => null);
    this.dormantTokensOf = dormantTokens || (() => "all");
    this.last = {};
  }

  set(key, text) {
    if (this.last[key] !== text && this.els[key]) { this.els[key].textContent = text; this.last[key] = text; }
  }

  update() {
    const s = this.state, m = s.model;
    if (!m) return;
    this.set("name", m.name);
    // the run's top-k (a what-if run may override the model's)
    const k = s.K !== m.n_expert_used ? `top-${s.K} (model: top-${m.n_expert_used})` : `top-${m.n_expert_used}`;
    const masked = s.run && s.run.settings && Array.isArray(s.run.settings.mask) && s.run.settings.mask.length;
    // a run split over llama.cpp rpc-servers names them (settings.rpc.servers)
    const rpc = s.run && s.run.settings && s.run.settings.rpc;
    const hosts = rpc && Array.isArray(rpc.servers) ? rpc.servers.filter((h) => typeof h === "string") : [];
    this.set("arch", `${m.architecture} · ${m.moe_layers.length}×${m.n_expert} experts · ${k}` +
      (masked ? ` · ${masked} masked` : "") +
      (hosts.length ? ` · rpc: ${hosts.join(", ")}` : "") +
      (m.n_shared_experts ? ` · ${m.n_shared_experts} shared` : ""));
    this.set("total", formatParams(m.total_params));
    this.set("active", formatParams(m.active_params));
    const pin = this.pinnedOf();
    const pinned = pin !== null && pin >= 0 && pin < s.nTokens;
    this.set("token", pinned ? `#${pin} / ${s.nTokens}` : `${s.applied} / ${s.nTokens}`);
    const t = pinned ? pin : s.applied - 1;
    this.set("tokenText", t >= 0 ? `${pinned ? "pinned " : ""}${quoteToken(s.tokens[t].text)}` : "");
    if (this.els.token && this.last.pinnedFlag !== pinned) {
      const stat = this.els.token.closest(".stat");
      if (stat) stat.classList.toggle("pinned", pinned);
      this.last.pinnedFlag = pinned;
    }
    this.set("hit", `${s.hit.all} / ${s.L * s.E}`);
    const sel = this.dormantTokensOf(), key = `${s.gen}:${sel}:${s.hit[sel]}:${s.appliedOf[sel]}`;
    if (this.last.dormantKey !== key) {
      this.last.dormantKey = key;
      const d = s.dormant(sel), open = s.L * s.E - d.masked;
      this.set("dormant", s.nTokens === 0 ? "–" : `${d.total} / ${open} · ${(100 * d.fraction).toFixed(1)}%`);
    }
    this.set("sharedNote", m.n_shared_experts
      ? `· S strip: ${m.n_shared_experts} shared expert${m.n_shared_experts === 1 ? "" : "s"} per MoE layer, always on` : "");
    if (this.els.total) this.els.total.title = `${m.total_params} parameters`;
    if (this.els.active) this.els.active.title = `${m.active_params} parameters active per token`;
  }
}
