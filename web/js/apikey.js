// `moeviz serve --api-key`: the page asks for the key once and keeps it in the browser,
// as llama-server's web UI does. It is kept in localStorage and handed to the server as
// the `moeviz_api_key` cookie (SameSite=Strict), which the browser sends with every
// request of the page: the websocket handshake, permalink pages and their preloads
// cannot carry an Authorization header (moeviz/server/auth.py).

const STORE = "moeviz.apiKey";
const COOKIE = "moeviz_api_key";

function setCookie(key) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${COOKIE}=${encodeURIComponent(key)}; path=/; max-age=31536000; SameSite=Strict${secure}`;
}

function stored() {
  try { return localStorage.getItem(STORE); } catch { return null; }   // storage may be off
}

function keep(key) {
  try { localStorage.setItem(STORE, key); } catch { /* the cookie alone still works */ }
  setCookie(key);
}

async function status() {
  const r = await fetch("/api/auth", { cache: "no-store" });
  if (!r.ok) throw new Error(`/api/auth: HTTP ${r.status}`);
  return r.json();
}

// A modal dialog with one password field; resolves with what was typed.
function ask(message) {
  return new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.className = "keys apikey";
    dialog.setAttribute("aria-label", "API key");
    dialog.innerHTML = `<form method="dialog">
      <h2>This server needs its API key</h2>
      <p>It was started with <code>--api-key</code>. The key is kept in this browser.</p>
      <label>API key <input id="apikey-input" type="password" autocomplete="current-password" required></label>
      <p id="apikey-error" role="alert" style="color: #ff9b8f; min-height: 1.2em"></p>
      <button id="apikey-submit" type="submit">Use this key</button></form>`;
    dialog.querySelector("#apikey-error").textContent = message || "";
    dialog.addEventListener("cancel", (e) => e.preventDefault());      // nothing to do without it
    dialog.querySelector("form").addEventListener("submit", () => {
      const key = dialog.querySelector("#apikey-input").value.trim();
      dialog.remove();
      resolve(key);
    });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector("#apikey-input").focus();
  });
}

// Resolves once the server takes this browser's requests: at once when it wants no key
// or the kept one is right; otherwise after the person has typed the right one.
export async function ensureKey() {
  const kept = stored();
  if (kept && !document.cookie.split("; ").some((c) => c.startsWith(`${COOKIE}=`))) setCookie(kept);
  let s = await status();
  let message = kept && s.required && !s.ok ? "The key kept in this browser was not accepted." : "";
  while (s.required && !s.ok) {
    const key = await ask(message);
    if (key) keep(key);
    s = await status();
    message = "That key was not accepted; try again.";
  }
}
