// The server's runs in flight and recently finished, from any source (this page, other
// pages, the OpenAI API): docs/protocol.md "Watching runs". A run in flight is watched
// on this page's socket (its messages then arrive as the page's own run's would, so
// every view shows it); a finished one opens its permalink. The card keeps a fixed
// height so that runs coming and going never move what is below it.

const STATUS = { queued: "queued", running: "live", done: "done", error: "failed", cancelled: "cancelled" };

export class LiveRunsView {
  constructor(after, { onWatch, onUnwatch } = {}) {
    this.onWatch = onWatch || (() => {});
    this.onUnwatch = onUnwatch || (() => {});
    this.runs = [];
    this.watching = null;
    const card = document.createElement("section");
    card.className = "card live-runs";
    card.id = "live-runs";
    card.setAttribute("aria-label", "runs on this server");
    card.innerHTML = '<h2>Runs on this server</h2><ul class="live-runs-list" role="list"></ul>';
    after.insertAdjacentElement("afterend", card);
    this.card = card;
    this.list = card.querySelector("ul");
    this.render();
  }

  setRuns(runs) { this.runs = Array.isArray(runs) ? runs : []; this.render(); }

  setWatching(run) { this.watching = run || null; this.render(); }

  render() {
    const list = this.list;
    list.textContent = "";
    if (!this.runs.length) {
      const li = document.createElement("li");
      li.className = "muted small";
      li.textContent = "No runs yet: runs from this page, other pages and the API (/v1) appear here.";
      list.appendChild(li);
      return;
    }
    for (const r of this.runs) {
      const li = document.createElement("li");
      li.dataset.run = r.run;
      li.dataset.status = r.status;
      const label = `${r.source === "api" ? "API" : "page"} · ${STATUS[r.status] || r.status}`;
      const inFlight = r.status === "queued" || r.status === "running";
      let el;
      if (inFlight) {
        el = document.createElement("button");
        el.type = "button";
        const watched = this.watching === r.run;
        el.setAttribute("aria-pressed", String(watched));
        el.title = watched ? "watching: press again to stop" : "watch this run token by token";
        el.addEventListener("click", () => (watched ? this.onUnwatch() : this.onWatch(r.run)));
      } else if (r.permalink) {
        el = document.createElement("a");
        el.href = r.permalink;
        el.title = "replay this run";
      } else {
        el = document.createElement("span");
      }
      el.className = "live-run";
      const title = document.createElement("span");
      title.className = "live-run-title";
      title.textContent = r.title || "(empty prompt)";
      const meta = document.createElement("span");
      meta.className = "live-run-meta muted small";
      meta.textContent = label;
      el.append(title, meta);
      li.appendChild(el);
      list.appendChild(li);
    }
  }
}
