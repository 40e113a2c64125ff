// The token stream. Token text always goes in as text (textContent), never HTML:
// it is model output. One <span> per token; prompt and generated tokens styled
// apart; tokens past the playback cursor are shown faint once the run is complete
// (so scrubbing back keeps the text in view), and not at all while it streams.
//
// Hovering a token shows its routing in the panel; clicking pins it (click again
// to unpin). The pin lives here only (the panel reads `pinned`); a pin set for a
// run whose spans are not built yet (a `#t=<n>` link) is kept for that run.
// Events are delegated: one listener for any number of tokens.
//
// Keyboard: the stream is one focusable box (a tab stop per token would bury the
// rest of the page): ←/→ move a token highlight that the panel shows as if hovered,
// Enter pins or unpins it, Escape lets go. Chat-template tokens (<|im_start|>, ...)
// are marked as such (special.js); their text stays the span's text.
import { isSpecial, specialLabel } from "./special.js";

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
    this.focusIdx = null;        // the token highlighted from the keyboard
    el.addEventListener("keydown", (ev) => this.key(ev));
    el.addEventListener("blur", () => this.setFocus(null));
  }

  key(ev) {
    const n = this.spans.length;
    if (!n) return;
    const at = this.focusIdx ?? this.pinned ?? Math.max(0, this.state.applied - 1);
    let next = null;
    if (ev.key === "ArrowRight" || ev.key === "ArrowDown") next = Math.min(n - 1, this.focusIdx === null ? at : at + 1);
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowUp") next = Math.max(0, this.focusIdx === null ? at : at - 1);
    else if (ev.key === "Home") next = 0;
    else if (ev.key === "End") next = n - 1;
    else if (ev.key === "Enter" || ev.key === " ") {
      if (this.focusIdx !== null) this.pin(this.pinned === this.focusIdx ? null : this.focusIdx);
    } else if (ev.key === "Escape") {
      this.setFocus(null);
    } else {
      return;
    }
    if (next !== null) this.setFocus(next);
    ev.preventDefault();
    ev.stopPropagation();          // the page's keys (space: play, arrows: step) stay out
  }

  setFocus(i) {
    if (this.focusIdx !== null && this.spans[this.focusIdx]) this.spans[this.focusIdx].classList.remove("kbd");
    this.focusIdx = i;
    if (i !== null && this.spans[i]) {
      this.spans[i].classList.add("kbd");
      scrollIntoViewIfNeeded(this.el, this.spans[i]);
    }
    this.onHover(i);
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
      if (this.focusIdx !== null) this.setFocus(null);
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
      const special = isSpecial(tok.text);
      if (special) {
        span.classList.add("special");
        span.dataset.label = specialLabel(tok.text);          // shown by CSS in place of the raw markup
      }
      if (i >= this.state.applied) span.classList.add("future");
      if (i === this.pinned) span.classList.add("pinned");
      span.dataset.i = String(i);
      span.textContent = tok.text;
      span.title = `#${i} · id ${tok.id} · ${tok.prompt ? "prompt" : "generated"}${special ? ` · special token ${tok.text}` : ""}`;
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
