// Generation controls: prompt picker (from /api/prompts: the prompts that suit the
// server's model first, grouped by domain, the others last under "for other models"),
// custom prompt, max tokens,
// temperature, seed, the router-probabilities switch, Generate / Stop. Builds the
// protocol's `generate` message; the server validates it again.

const CUSTOM = "";

export class Controls {
  constructor(root, { onGenerate, onStop } = {}) {
    this.$ = (id) => root.querySelector(`#${id}`);
    this.select = this.$("prompt-select");
    this.text = this.$("prompt-text");
    this.prompts = new Map();
    this.customText = "";
    this.limits = null;
    this.select.addEventListener("change", () => this.showPrompt());
    // editing a library prompt turns it into a custom one, starting from its text
    this.text.addEventListener("input", () => {
      if (this.select.value !== CUSTOM) this.select.value = CUSTOM;
      this.customText = this.text.value;
    });
    this.$("generate").addEventListener("click", () => onGenerate && onGenerate(this.request()));
    this.$("stop").addEventListener("click", () => onStop && onStop());
  }

  async load(base = "") {
    const [prompts, limits, settings] = await Promise.all([getJSON(`${base}api/prompts`), getJSON(`${base}api/limits`),
      getJSON(`${base}api/settings`).catch(() => null)]);
    this.limits = limits;
    this.applySettings(settings);
    const maxTokens = this.$("max-tokens");
    if (limits && limits.max_tokens) maxTokens.max = String(limits.max_tokens);
    this.select.replaceChildren(new Option("Custom prompt…", CUSTOM));
    const all = (prompts && prompts.prompts) || [];
    const fit = all.filter((p) => p.suits !== false), others = all.filter((p) => p.suits === false);
    const groups = new Map();
    const group = (label) => {
      if (!groups.has(label)) {
        const g = document.createElement("optgroup");
        g.label = label;
        groups.set(label, g);
        this.select.appendChild(g);
      }
      return groups.get(label);
    };
    for (const p of fit) group(p.domain || "other").appendChild(new Option(p.title || p.name, p.name));
    const kind = prompts && prompts.model_kind === "demo" ? "larger models (the demo model knows only Python)" : "other models";
    for (const p of others) group(`for ${kind}`).appendChild(new Option(p.title || p.name, p.name));
    for (const p of all) this.prompts.set(p.name, p);
    if (fit.length || all.length) this.select.value = (fit[0] || all[0]).name;
    this.showPrompt();
  }

  // The inputs' defaults and ranges: the server's one table of run settings (moeviz/settings.py)
  applySettings(table) {
    for (const s of (table && table.settings) || []) {
      const input = s.page && this.$(s.name.replace(/_/g, "-"));
      if (!input) continue;
      if (input.type === "checkbox") { input.checked = !!s.default; continue; }
      input.value = String(s.default);
      if (s.min !== undefined) input.min = String(s.min);
      if (s.max !== undefined) input.max = String(s.max);
    }
  }

  showPrompt() {
    const p = this.prompts.get(this.select.value);
    this.text.value = p ? promptPreview(p) : this.customText;
    this.text.classList.toggle("library", !!p);
  }

  request() {
    const msg = { type: "generate" };
    const p = this.prompts.get(this.select.value);
    if (p) msg.prompt_name = p.name;
    else if (this.$("as-chat").checked) msg.messages = [{ role: "user", content: this.text.value }];
    else msg.text = this.text.value;
    const int = (id) => { const v = parseInt(this.$(id).value, 10); return Number.isFinite(v) ? v : undefined; };
    const num = (id) => { const v = parseFloat(this.$(id).value); return Number.isFinite(v) ? v : undefined; };
    const settings = { max_tokens: int("max-tokens"), temperature: num("temperature"), seed: int("seed") };
    for (const [k, v] of Object.entries(settings)) if (v !== undefined) msg[k] = v;
    msg.probs = this.$("probs").checked;
    return msg;
  }

  setRunning(running, connected = true) {
    this.$("generate").disabled = running || !connected;
    this.$("stop").disabled = !running;
  }
}

function promptPreview(p) {
  if (typeof p.text === "string") return p.text;
  return (p.messages || []).map((m) => `${m.role}: ${m.content}`).join("\n");
}

export async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}
