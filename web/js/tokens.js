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
// A long run (a replay of 100k tokens) would be a DOM too big to lay out: the first
// DIRECT tokens are spans in the box as always, later ones go in blocks of CHUNK
// tokens whose spans are made only when the block scrolls into view (or a token in
// it is current, pinned or focused); a block off screen is skipped by layout
// (content-visibility) and, until made, is an empty block of about its height.
//
// Keyboard: the stream is one focusable box (a tab stop per token would bury the
// rest of the page): ←/→ move a token highlight that the panel shows as if hovered,
// Enter pins or unpins it, Escape lets go. Chat-template tokens (<|im_start|>, ...)
// are marked as such (special.js); their text stays the span's text.
import { isSpecial, specialLabel } from "./special.js";

export const DIRECT = 4096;      // tokens shown as spans in the box itself (every live run within the default limits)
export const CHUNK = 1024;       // beyond that, tokens per block
const LINE_PX = 13 * 1.75, CHAR_PX = 7.8;   // .tokens' line height and a monospace character, for a block's height

export class TokenStream {
  constructor(el, state, { onHover } = {}) {
    this.el = el;
    this.state = state;
    this.onHover = onHover || (() => {});
    this.spans = [];             // span of token i (undefined in a block not made yet)
    this.count = 0;              // tokens shown (spans made, or placed in a block)
    this.chunks = [];            // blocks past DIRECT: {el, start, end, made}
    this.observer = typeof IntersectionObserver === "undefined" ? null : new IntersectionObserver((entries) => {
      for (const e of entries) if (e.isIntersecting) this.make(this.chunks[Number(e.target.dataset.chunk)]);
    }, { root: el, rootMargin: "300px 0px" });
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
    const n = this.count;
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
    const span = i !== null ? this.spanAt(i) : null;
    if (span) {
      span.classList.add("kbd");
      scrollIntoViewIfNeeded(this.el, span);
    }
    this.onHover(i);
  }

  pin(i) {
    if (this.pinned !== null && this.spans[this.pinned]) this.spans[this.pinned].classList.remove("pinned");
    this.pinned = i;
    this.pinnedGen = this.state.gen;
    const span = i !== null ? this.spanAt(i) : null;
    if (span) span.classList.add("pinned");
  }

  // token i's span, making its block first when it is not made yet (null: not shown)
  spanAt(i) {
    if (i >= DIRECT && i < this.count) this.make(this.chunks[Math.floor((i - DIRECT) / CHUNK)]);
    return this.spans[i] || null;
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
      this.count = 0;
      this.chunks = [];
      if (this.observer) this.observer.disconnect();
      this.cursor = 0;
      if (this.focusIdx !== null) this.setFocus(null);
      if (this.pinnedGen !== s.gen) this.pinned = null;   // a pin from an earlier run
      this.gen = s.gen;
    }
    // while a run streams, text appears as the cursor reaches it; afterwards all of it
    const visible = s.done ? s.nTokens : Math.max(s.applied, this.count);
    if (visible > this.count) this.show(this.count, visible);
    if (this.cursor !== s.applied) this.moveCursor(this.cursor, s.applied);
  }

  // Show tokens [from, to): spans in the box up to DIRECT, then into blocks.
  show(from, to) {
    const perLine = to > DIRECT ? this.charsPerLine() : 1;     // read before this call's writes: no forced layout
    if (from < DIRECT) this.el.appendChild(this.spansOf(from, Math.min(to, DIRECT)));
    for (let i = Math.max(from, DIRECT); i < to;) {
      const c = Math.floor((i - DIRECT) / CHUNK);
      let chunk = this.chunks[c];
      if (!chunk) {
        const el = document.createElement("div");
        el.className = "tok-chunk";
        el.dataset.chunk = String(c);
        chunk = this.chunks[c] = { el, start: i, end: i, made: false, chars: 0 };
        this.el.appendChild(el);
        if (this.observer) this.observer.observe(el);
      }
      const end = Math.min(to, DIRECT + (c + 1) * CHUNK);
      if (chunk.made) chunk.el.appendChild(this.spansOf(chunk.end, end));
      else for (let t = chunk.end; t < end; t++) chunk.chars += this.state.tokens[t].text.length + 1;
      chunk.end = end;
      if (!chunk.made) chunk.el.style.height = `${Math.ceil(chunk.chars / perLine) * LINE_PX}px`;
      i = end;
    }
    this.count = to;
  }

  // For an empty block's height, its text's lines at the box's width (an estimate; a
  // made block has its own height).
  charsPerLine() {
    return Math.max(1, Math.floor((this.el.clientWidth - 16) / CHAR_PX));
  }

  make(chunk) {
    if (!chunk || chunk.made) return;
    chunk.made = true;
    if (this.observer) this.observer.unobserve(chunk.el);
    chunk.el.style.height = "";
    chunk.el.classList.add("made");
    chunk.el.appendChild(this.spansOf(chunk.start, chunk.end));
  }

  // spans of tokens [from, to), recorded in this.spans, in a fragment
  spansOf(from, to) {
    const frag = document.createDocumentFragment(), s = this.state;
    for (let i = from; i < to; i++) {
      const tok = s.tokens[i], span = document.createElement("span");
      let cls = tok.prompt ? "tok prompt" : "tok gen";
      if (tok.text === "") cls += " empty";       // a byte of a split character
      if (tok.text.endsWith("\n")) cls += " nl";
      const special = isSpecial(tok.text);
      if (special) {
        cls += " special";
        span.dataset.label = specialLabel(tok.text);          // shown by CSS in place of the raw markup
      }
      if (i >= s.applied) cls += " future";
      if (i === this.pinned) cls += " pinned";
      span.className = cls;
      span.dataset.i = String(i);
      span.textContent = tok.text;
      span.title = `#${i} · id ${tok.id} · ${tok.prompt ? "prompt" : "generated"}${special ? ` · special token ${tok.text}` : ""}`;
      frag.appendChild(span);
      this.spans[i] = span;
    }
    return frag;
  }

  moveCursor(from, to) {
    const spans = this.spans;
    if (from > 0 && spans[from - 1]) spans[from - 1].classList.remove("current");
    const [a, b] = from < to ? [from, to] : [to, from];
    // made spans only: a block made later takes the cursor from the state
    for (let i = a; i < Math.min(b, this.count, DIRECT); i++) spans[i].classList.toggle("future", i >= to);
    for (const chunk of this.chunks) {
      if (!chunk || !chunk.made || chunk.end <= a || chunk.start >= b) continue;
      for (let i = Math.max(a, chunk.start); i < Math.min(b, chunk.end); i++) spans[i].classList.toggle("future", i >= to);
    }
    this.cursor = to;
    const cur = to > 0 ? this.spanAt(to - 1) : null;
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
