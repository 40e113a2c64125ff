// Generation controls: prompt picker (from /api/prompts), custom prompt, max tokens,
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
    const [prompts, limits] = await Promise.all([getJSON(`${base}api/prompts`), getJSON(`${base}api/limits`)]);
    this.limits = limits;
    const maxTokens = this.$("max-tokens");
    if (limits && limits.max_tokens) maxTokens.max = String(limits.max_tokens);
    this.select.replaceChildren(new Option("Custom prompt…", CUSTOM));
    const groups = new Map();
    for (const p of (prompts && prompts.prompts) || []) {
      this.prompts.set(p.name, p);
      const domain = p.domain || "other";
      if (!groups.has(domain)) {
        const g = document.createElement("optgroup");
        g.label = domain;
        groups.set(domain, g);
        this.select.appendChild(g);
      }
      groups.get(domain).appendChild(new Option(p.title || p.name, p.name));
    }
    if (this.prompts.size) this.select.value = this.prompts.keys().next().value;
    this.showPrompt();
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
