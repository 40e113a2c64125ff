// The live protocol (docs/protocol.md): one websocket at /ws, JSON both ways.
// Reconnects with backoff when the connection drops (a server restart, a laptop
// waking up); the server cancels a run whose client left, so a reconnect starts clean.

export class LiveSocket {
  constructor(url, { onMessage, onStatus } = {}) {
    this.url = url;
    this.onMessage = onMessage || (() => {});
    this.onStatus = onStatus || (() => {});
    this.ws = null;
    this.retryMs = 500;
    this.closed = false;
  }

  static defaultUrl() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
  }

  connect() {
    this.onStatus("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => { this.retryMs = 500; this.onStatus("open"); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }   // not ours to crash on
      if (msg && typeof msg.type === "string") this.onMessage(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.onStatus("closed");
      if (!this.closed) {
        setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(5000, this.retryMs * 2);
      }
    };
  }

  get open() { return !!this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  close() { this.closed = true; if (this.ws) this.ws.close(); }
}
