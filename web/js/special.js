// Chat-template and control tokens (<|im_start|>, <|endoftext|>, <s>, [INST], ...).
// The protocol sends only a token's text, so they are told apart by their shape; the
// page shows them as a labelled mark instead of raw markup that reads like model output.

const SPECIAL = /^(<\|[^|<>\s]{1,40}\|>|<\/?s>|<unk>|<pad>|\[\/?INST\]|<<\/?SYS>>|<\/?(start|end)_of_turn>|<(bos|eos)>)$/;

export function isSpecial(text) { return SPECIAL.test(text); }

// "<|im_start|>" -> "im_start": the label shown in the mark
export function specialLabel(text) { return text.replace(/^<\|?|\|?>$/g, "").replace(/^\[|\]$/g, ""); }

// A token's text for titles and tooltips: quoted, whitespace escaped, special ones marked.
export function quoteToken(text) { return isSpecial(text) ? `⟨${specialLabel(text)}⟩` : JSON.stringify(text); }
