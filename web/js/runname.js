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

// model: the run's model (its top-k tells whether the run changed it); otherModel: the
// run's model name when it is not the model the page serves.
export function runTitle(prompt, settings, { model = null, otherModel = null } = {}) {
  const title = settings && typeof settings.prompt_title === "string" ? settings.prompt_title.trim() : "";
  const text = promptText(prompt).replace(/\s+/g, " ").trim();
  const base = title || (text ? `“${text.length > MAX ? `${text.slice(0, MAX - 1).trimEnd()}…` : text}”` : "untitled run");
  const what = whatDiffers(settings, model);
  if (otherModel) what.push(`model ${otherModel}`);
  return [base, ...what].join(" · ");
}

// What a what-if run changed, in words: "1 expert per token", "6 experts masked",
// "tokens from a.json". A run of the model as it is adds nothing.
export function whatDiffers(settings, model = null) {
  const s = settings || {}, out = [];
  const k = s.experts_per_token;
  if (Number.isInteger(k) && model && k !== model.n_expert_used) out.push(`${k} expert${k === 1 ? "" : "s"} per token`);
  const masked = Array.isArray(s.mask) ? s.mask.length : 0;
  if (masked) out.push(`${masked} expert${masked === 1 ? "" : "s"} masked`);
  const from = s.tokens_from;
  if (from && typeof from === "object" && typeof from.trace === "string") out.push(`tokens from ${from.trace}`);
  return out;
}

// The sampler's settings (what picks the next token) and the routing's (what picks the
// experts) apart, in plain words: a sampler's "top-k 40" is not the model's top-4.
export function settingsLine(settings, model = null) {
  const s = settings || {}, sampling = [], routing = [];
  if (s.max_tokens !== undefined) sampling.push(`up to ${s.max_tokens} new tokens`);
  if (s.temperature !== undefined) sampling.push(`temperature ${s.temperature}`);
  if (s.seed !== undefined) sampling.push(`seed ${s.seed}`);
  if (s.top_p !== undefined && s.top_p !== 1) sampling.push(`top-p ${s.top_p}`);
  if (s.top_k) sampling.push(`the ${s.top_k} likeliest tokens`);
  const k = Number.isInteger(s.experts_per_token) ? s.experts_per_token : model ? model.n_expert_used : null;
  if (k !== null) routing.push(`${k} expert${k === 1 ? "" : "s"} per token${model && k !== model.n_expert_used ? ` (model: ${model.n_expert_used})` : ""}`);
  const masked = Array.isArray(s.mask) ? s.mask.length : 0;
  if (masked) routing.push(`${masked} masked`);
  if (s.probs) routing.push("router probabilities recorded");
  return [sampling.length ? `sampling: ${sampling.join(", ")}` : "", routing.length ? `routing: ${routing.join(", ")}` : ""]
    .filter(Boolean).join(" · ");
}
