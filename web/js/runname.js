// What a run is called in the page (compare list and tables, the replay note, the
// status line): its library prompt's title when it has one, else the opening words of
// its prompt. Ids mean nothing to a reader; the id stays in the permalink.

const MAX = 48;

export function promptText(prompt) {
  if (typeof prompt === "string") return prompt;
  const msgs = Array.isArray(prompt) ? prompt : [];
  const user = msgs.filter((m) => m && m.role === "user");
  return (user.length ? user[user.length - 1] : msgs[msgs.length - 1] || { content: "" }).content || "";
}

export function runTitle(prompt, settings) {
  const title = settings && typeof settings.prompt_title === "string" ? settings.prompt_title.trim() : "";
  if (title) return title;
  const text = promptText(prompt).replace(/\s+/g, " ").trim();
  if (!text) return "untitled run";
  return `“${text.length > MAX ? `${text.slice(0, MAX - 1).trimEnd()}…` : text}”`;
}

// The settings worth showing next to a replayed run's prompt.
export function settingsLine(settings) {
  const s = settings || {}, parts = [];
  if (s.max_tokens !== undefined) parts.push(`max tokens ${s.max_tokens}`);
  if (s.temperature !== undefined) parts.push(`temperature ${s.temperature}`);
  if (s.seed !== undefined) parts.push(`seed ${s.seed}`);
  if (s.top_p !== undefined && s.top_p !== 1) parts.push(`top-p ${s.top_p}`);
  if (s.top_k) parts.push(`top-k ${s.top_k}`);
  if (s.probs) parts.push("router probabilities");
  return parts.join(" · ");
}
