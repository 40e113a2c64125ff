// The token stream. Token text always goes in as text (textContent), never HTML:
// it is model output. One <span> per token; prompt and generated tokens styled
// apart; tokens past the playback cursor are shown faint once the run is complete
// (so scrubbing back keeps the text in view), and not at all while it streams.
//
// Hovering a token shows its routing in the panel; clicking pins it (click again
// to unpin). The pin lives here only (the panel reads `pinned`); a pin set for a
// run whose spans are not built yet (a `#t=<n>` link) is kept for that run.
// Events are delegated: one listener for any number of tokens.

export class TokenStream {
  constructor(el, state, { onHover } = {}) {
    this.el = el;
    this.state = state;
    this.onHover = onHover || (() => {});
    this.spans = [];
    this.gen = -1;
    this.cursor = 0;
    this.pinned = null;
    this.pinnedGen = -1;        // the run (state.gen) the pin belongs to
    this.scrollTo = null;
    el.addEventListener("mouseover", (ev) => {
      const i = tokenIndex(ev.target);
      if (i !== null) this.onHover(i);
    });
    el.addEventListener("mouseleave", () => this.onHover(null));
    el.addEventListener("click", (ev) => {
      const i = tokenIndex(ev.target);
      if (i === null) return;
      this.pin(this.pinned === i ? null : i);
    });
  }

  pin(i) {
    if (this.pinned !== null && this.spans[this.pinned]) this.spans[this.pinned].classList.remove("pinned");
    this.pinned = i;
    this.pinnedGen = this.state.gen;
    if (i !== null && this.spans[i]) this.spans[i].classList.add("pinned");
  }

  update() {
    const s = this.state;
    // Scroll to last frame's newest token first: layout is still clean from the
    // browser's last paint, so reading it now costs nothing. Reading it after this
    // frame's DOM writes would force a synchronous layout every token.
    if (this.scrollTo !== null) { scrollIntoViewIfNeeded(this.el, this.scrollTo); this.scrollTo = null; }
    if (this.gen !== s.gen) {
      this.el.replaceChildren();
      this.spans = [];
      this.cursor = 0;
      if (this.pinnedGen !== s.gen) this.pinned = null;   // a pin from an earlier run
      this.gen = s.gen;
    }
    // while a run streams, text appears as the cursor reaches it; afterwards all of it
    const visible = s.done ? s.nTokens : Math.max(s.applied, this.spans.length);
    if (visible > this.spans.length) this.append(this.spans.length, visible);
    if (this.cursor !== s.applied) this.moveCursor(this.cursor, s.applied);
  }

  append(from, to) {
    const frag = document.createDocumentFragment();
    for (let i = from; i < to; i++) {
      const tok = this.state.tokens[i], span = document.createElement("span");
      span.className = tok.prompt ? "tok prompt" : "tok gen";
      if (tok.text === "") span.classList.add("empty");       // a byte of a split character
      if (tok.text.endsWith("\n")) span.classList.add("nl");
      if (i >= this.state.applied) span.classList.add("future");
      if (i === this.pinned) span.classList.add("pinned");
      span.dataset.i = String(i);
      span.textContent = tok.text;
      span.title = `#${i} · id ${tok.id} · ${tok.prompt ? "prompt" : "generated"}`;
      frag.appendChild(span);
      this.spans.push(span);
    }
    this.el.appendChild(frag);
  }

  moveCursor(from, to) {
    const spans = this.spans;
    if (from > 0 && spans[from - 1]) spans[from - 1].classList.remove("current");
    const [a, b] = from < to ? [from, to] : [to, from];
    for (let i = a; i < Math.min(b, spans.length); i++) spans[i].classList.toggle("future", i >= to);
    this.cursor = to;
    const cur = spans[to - 1];
    if (cur) {
      cur.classList.add("current");
      if (this.pinned === null) this.scrollTo = cur;     // keep the newest token in view
    }
  }
}

function tokenIndex(target) {
  const span = target && target.closest ? target.closest(".tok") : null;
  return span ? Number(span.dataset.i) : null;
}

// box is position: relative, so offsetTop is measured from it
function scrollIntoViewIfNeeded(box, span) {
  const top = span.offsetTop, bottom = top + span.offsetHeight;
  if (top < box.scrollTop) box.scrollTop = top - 4;
  else if (bottom > box.scrollTop + box.clientHeight) box.scrollTop = bottom - box.clientHeight + 4;
}
