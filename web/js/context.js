// One warning line when a run goes (or is set to go) past the longest sequence the model
// was trained on (its GGUF's context length, /api/model n_ctx_train): llama.cpp generates
// on, but what comes out past it is unreliable. The CLI's `record` says the same.
export class ContextWarning {
  constructor(el, state, { maxTokens }) {
    this.el = el;
    this.state = state;
    this.maxTokens = maxTokens;       // the max tokens input
    this.trained = null;
    this.name = "";
    this.shown = null;
    maxTokens.addEventListener("input", () => this.update());
  }

  setModel(model) {
    this.trained = model && Number.isInteger(model.n_ctx_train) && model.n_ctx_train > 0 ? model.n_ctx_train : null;
    this.name = (model && model.name) || "the model";
    this.update();
  }

  text() {
    const s = this.state, n = this.trained;
    if (!n) return "";
    if (s.nTokens > n && (s.status === "running" || s.status === "done")) {
      return `this run went past the ${n} tokens ${this.name} was trained on: what it generated after token ${n} is unreliable`;
    }
    const asked = Number(this.maxTokens.value);
    if (Number.isFinite(asked) && asked > n) {
      return `max tokens ${asked} goes past the ${n} tokens ${this.name} was trained on: what it generates past them is unreliable`;
    }
    return "";
  }

  update() {
    const t = this.text();
    if (t === this.shown) return;
    this.shown = t;
    this.el.textContent = t;
    this.el.hidden = !t;
  }
}
