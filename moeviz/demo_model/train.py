"""Train moeviz's demo MoE language model and write it as a GGUF (+ a JSON of training facts).

    python -m moeviz.demo_model.train --out moeviz/data/demo-moe.gguf [--seed 0] [--steps N]

Steps: read the Python standard library's code and documentation (corpus.py, with a
held-out split), train a byte-level BPE on the training split, tokenize everything
with llama.cpp (so training ids are the ids moeviz will feed the model), train the
MoE (cross-entropy + Switch/Mixtral load-balancing loss), evaluate held-out perplexity
against a unigram baseline, gather routing statistics, export the GGUF, load it in
llama.cpp and record sample generations. Deterministic for a given seed, thread
count and machine (PyTorch's deterministic CPU kernels, seeded data order).

Needs PyTorch (a development dependency only).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import corpus as corpus_mod
from . import stats
from .export import ModelConfig, write_gguf
from .tokenizer import EOT, SPECIAL_TOKENS, LlamaTokenizer, tokenizer_only_gguf, train_bpe_fast

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "demo-moe.gguf"
SAMPLE_PROMPTS = [
    "def read_config(path):\n",
    "The with statement",
    "class Queue:\n    \"\"\"",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m moeviz.demo_model.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="GGUF to write (facts go next to it as .json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3981,
                    help="training steps (with --time-budget: the most it may take)")
    ap.add_argument("--time-budget", type=float, default=0.0, metavar="MINUTES",
                    help="choose the step count during the run so training takes about this long (0: off); "
                         "the steps it chose are in the JSON, and --steps N without a budget repeats the run exactly")
    ap.add_argument("--batch", type=int, default=4, help="sequences per step")
    ap.add_argument("--seq", type=int, default=512, help="tokens per sequence (also the GGUF's trained context)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay", type=float, default=0.2, help="share of the steps, at the end, over which the learning rate decays")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--aux-coef", type=float, default=0.01, help="weight of the load-balancing loss")
    ap.add_argument("--prose-share", type=float, default=0.35, help="share of training sequences drawn from prose")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-head-kv", type=int, default=2)
    ap.add_argument("--n-ff", type=int, default=32, help="FFN width of each expert")
    ap.add_argument("--n-expert", type=int, default=64)
    ap.add_argument("--n-expert-used", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1,
                    help="PyTorch threads (results depend on it; on a busy 2-core machine 1 is several times faster than 2)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--eval-limit", type=int, default=0, help="held-out tokens per kind in the final evaluation (0: all)")
    return ap.parse_args(argv)


# Data -------------------------------------------------------------------------------------
def tokenize_corpus(args, cfg: ModelConfig, workdir: Path):
    t0 = time.perf_counter()
    docs = corpus_mod.documents()
    train_docs, held_docs = corpus_mod.split(docs)
    log(f"corpus: {len(train_docs)} training / {len(held_docs)} held-out documents from {corpus_mod.stdlib_dir()}")
    tokens, merges = train_bpe_fast([d.text for d in train_docs], cfg.n_vocab)
    if len(tokens) + len(SPECIAL_TOKENS) != cfg.n_vocab:
        raise SystemExit(f"BPE stopped at {len(tokens)} tokens; the corpus is too small for --vocab {cfg.n_vocab}")
    t_bpe = time.perf_counter() - t0
    log(f"BPE: {len(merges)} merges in {t_bpe:.0f}s")
    tok_path = tokenizer_only_gguf(cfg, tokens, merges, workdir)
    eot = cfg.n_vocab - len(SPECIAL_TOKENS) + SPECIAL_TOKENS.index(EOT)
    streams: dict[str, dict[str, list]] = {"train": collections.defaultdict(list), "held": collections.defaultdict(list)}
    chars = {"train": collections.Counter(), "held": collections.Counter()}
    try:
        with LlamaTokenizer(tok_path) as tk:
            for split_name, ds in (("train", train_docs), ("held", held_docs)):
                for d in ds:
                    streams[split_name][d.kind].append(np.array(tk.encode(d.text) + [eot], dtype=np.int32))
                    chars[split_name][d.kind] += len(d.text)
    finally:
        tok_path.unlink()
    out = {s: {k: np.concatenate(v) for k, v in streams[s].items()} for s in streams}
    info = {
        "python": platform.python_version(),
        "stdlib": str(corpus_mod.stdlib_dir()),
        "documents": {"train": collections.Counter(d.kind for d in train_docs),
                      "held_out": collections.Counter(d.kind for d in held_docs)},
        "characters": {"train": dict(chars["train"]), "held_out": dict(chars["held"])},
        "tokens": {"train": {k: int(len(v)) for k, v in out["train"].items()},
                   "held_out": {k: int(len(v)) for k, v in out["held"].items()}},
        "held_out_documents": sorted(d.name for d in held_docs if not d.name.startswith("prose:doc/")),
        "bpe_seconds": round(t_bpe, 1),
        "tokenize_seconds": round(time.perf_counter() - t0 - t_bpe, 1),
    }
    log(f"tokens: train {info['tokens']['train']}, held-out {info['tokens']['held_out']}")
    return tokens, merges, out, info


class Batches:
    """Random windows of seq+1 tokens; a sequence is prose with probability prose_share."""

    def __init__(self, streams: dict[str, np.ndarray], seq: int, batch: int, prose_share: float, seed: int):
        self.streams, self.seq, self.batch, self.prose_share = streams, seq, batch, prose_share
        self.rng = np.random.default_rng(seed)

    def next(self) -> np.ndarray:
        rows = []
        for _ in range(self.batch):
            s = self.streams["prose" if self.rng.random() < self.prose_share else "code"]
            i = int(self.rng.integers(0, len(s) - self.seq - 1))
            rows.append(s[i:i + self.seq + 1])
        return np.stack(rows).astype(np.int64)


def windows(stream: np.ndarray, seq: int, limit: int = 0) -> np.ndarray:
    """Non-overlapping windows of seq+1 tokens (consecutive windows share one token)."""
    n = (len(stream) - 1) // seq
    if limit:
        n = min(n, max(1, limit // seq))
    return np.stack([stream[i * seq:i * seq + seq + 1] for i in range(n)]).astype(np.int64)


# Training ---------------------------------------------------------------------------------
def decay_start(steps: int, args) -> int:
    return max(args.warmup, steps - int(round(args.decay * steps)))


def lr_at(step: int, args) -> float:
    """Warm-up, then constant, then a cosine decay to a tenth over the last `decay` share
    of the steps (warmup-stable-decay). Until the decay starts the rate does not depend
    on the step count, which is what lets --time-budget pick it during the run."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    start = decay_start(args.steps, args)
    if step < start:
        return args.lr
    t = (step - start) / max(1, args.steps - start)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def steps_for_budget(step: int, elapsed: float, args) -> int | None:
    """With --time-budget, before step `step` (all steps so far at the constant rate,
    `elapsed` seconds in): the step count to train for, once finishing at the current
    pace would fill the budget or the decay of --steps (the cap) is due; None: not yet.
    It is the smallest N whose decay starts at `step` or later, so `--steps N` without a
    budget replays exactly this run's schedule."""
    if step <= args.warmup:
        return None
    n = step
    while decay_start(n, args) < step:
        n += 1
    if step < decay_start(args.steps, args) and elapsed * n / step < args.time_budget * 60:
        return None
    return n


def evaluate(model, wins: np.ndarray, batch: int, routing: bool = False):
    """Mean NLL over all predicted tokens of the windows (+ routing of the input tokens)."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    nll, n, ids, inputs = 0.0, 0, [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(wins), batch):
            x = torch.from_numpy(wins[i:i + batch])
            logits, _, r = model(x[:, :-1], return_routing=routing)
            nll += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum").item()
            n += x[:, 1:].numel()
            if routing:
                ids.append(np.stack([top.numpy() for _, top in r], axis=1).astype(np.int8))   # [N, L, k]
                inputs.append(x[:, :-1].reshape(-1).numpy())
    model.train()
    if routing:
        return nll / n, np.concatenate(ids), np.concatenate(inputs)
    return nll / n


def train(args, cfg: ModelConfig, data) -> tuple[object, dict]:
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    from .model import MoEModel  # noqa: PLC0415

    torch.manual_seed(args.seed)
    model = MoEModel(cfg)
    decay = [p for n, p in model.named_gguf() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_gguf() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(data["train"], args.seq, args.batch, args.prose_share, args.seed)
    probe = {k: windows(data["held"][k], args.seq, 8 * args.seq) for k in ("code", "prose")}
    history = []
    t0 = time.perf_counter()
    run_loss = run_aux = 0.0
    budget_open = bool(args.time_budget)
    step = 0
    while step < args.steps:
        if budget_open:
            n = steps_for_budget(step, time.perf_counter() - t0, args)
            if n is not None:
                budget_open = False
                args.steps = n
                log(f"time budget: training for {n} steps (the learning rate decays from step {decay_start(n, args)})")
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        x = torch.from_numpy(batches.next())
        logits, aux, _ = model(x[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, cfg.n_vocab), x[:, 1:].reshape(-1))
        loss = ce + args.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += ce.item()
        run_aux += aux.item()
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            n = args.log_every if done % args.log_every == 0 else done % args.log_every
            el = time.perf_counter() - t0
            log(f"step {done}/{args.steps}  loss {run_loss / n:.3f}  balance {run_aux / n:.3f}  lr {lr_at(step, args):.2e}  "
                f"{done * args.batch * args.seq / el:.0f} tok/s  {el / 60:.1f} min")
            run_loss = run_aux = 0.0
        if done % args.eval_every == 0 or done == args.steps:
            ev = {k: evaluate(model, w, args.batch) for k, w in probe.items()}
            history.append({"step": done, "minutes": round((time.perf_counter() - t0) / 60, 2),
                            **{f"held_out_ppl_{k}": round(math.exp(v), 2) for k, v in ev.items()}})
            log(f"held-out probe: " + ", ".join(f"{k} ppl {math.exp(v):.2f}" for k, v in ev.items()))
        step += 1
    return model, {"seconds": round(time.perf_counter() - t0, 1), "history": history}


# Reporting --------------------------------------------------------------------------------
def routing_report(ids_by_kind: dict[str, np.ndarray], inputs_by_kind: dict[str, np.ndarray], cfg: ModelConfig,
                   tokens: list[str]) -> dict:
    E = cfg.n_expert
    all_ids = np.concatenate([ids_by_kind["code"], ids_by_kind["prose"]])
    tv = stats.code_prose_divergence(ids_by_kind["code"], ids_by_kind["prose"], E)
    hc = stats.expert_histograms(ids_by_kind["code"], E)
    hp = stats.expert_histograms(ids_by_kind["prose"], E)
    names = list(tokens) + SPECIAL_TOKENS
    b2u_inv = {c: b for b, c in __import__("moeviz.bpe", fromlist=["x"]).bytes_to_unicode().items()}

    def text(t):
        return bytes(b2u_inv.get(ch, 63) for ch in names[t]).decode("utf-8", "replace") if t < len(tokens) else names[t]

    all_inputs = np.concatenate([inputs_by_kind["code"], inputs_by_kind["prose"]])
    tok_total = np.bincount(all_inputs, minlength=cfg.n_vocab)
    experts = []
    for li in range(cfg.n_layer):
        layer = []
        for e in range(E):
            hit = (all_ids[:, li] == e).any(-1)
            cnt = np.bincount(all_inputs[hit], minlength=cfg.n_vocab)
            # tokens routed here most, among tokens sent here at least half the time they occur
            purity = np.where(tok_total > 0, cnt / np.maximum(tok_total, 1), 0)
            cand = np.flatnonzero((purity >= 0.5) & (cnt >= 20))
            top = cand[np.argsort(-cnt[cand], kind="stable")][:8]
            layer.append({"expert": e, "share_code": round(float(hc[li, e]), 4), "share_prose": round(float(hp[li, e]), 4),
                          "top_tokens": [[text(int(t)), int(cnt[t]), round(float(purity[t]), 2)] for t in top]})
        experts.append(layer)
    # Code-vs-prose separation beyond text-to-text variation (the statistic the tests use),
    # over 16 evenly spaced held-out chunks of 384 tokens of each kind.
    chunks, kinds = [], []
    for kind in ("code", "prose"):
        a = ids_by_kind[kind]
        starts = np.linspace(0, len(a) - 384, 16).astype(int)
        chunks += [a[s:s + 384] for s in starts]
        kinds += [kind] * len(starts)
    sep = stats.kind_separation(chunks, kinds, E)
    return {"code_vs_prose_total_variation": tv.round(4).tolist(),
            "kind_separation_384": {k: v.round(4).tolist() for k, v in sep.items()},
            "code_vs_prose_total_variation_mean": round(float(tv.mean()), 4),
            "load": stats.load_balance(all_ids, E), "experts": experts}


def sample_generations(path: Path) -> list[dict]:
    from ..engine import Engine, SamplingSettings  # noqa: PLC0415

    out = []
    engine = Engine(path, n_ctx=512, capture="native", kv_type="f32", flash_attn="off")
    try:
        for prompt in SAMPLE_PROMPTS:
            for temp in (0.0, 0.7):
                text, n = "", 0
                for ev in engine.generate(prompt, SamplingSettings(max_tokens=80, temperature=temp, seed=0)):
                    if hasattr(ev, "token"):
                        text += ev.token.text
                        n += 1
                out.append({"prompt": prompt, "temperature": temp, "seed": 0, "tokens": n, "completion": text})
    finally:
        engine.close()
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()
    cfg = ModelConfig(n_vocab=args.vocab, n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
                      n_head_kv=args.n_head_kv, n_ff=args.n_ff, n_expert=args.n_expert,
                      n_expert_used=args.n_expert_used, n_ctx_train=args.seq)
    total, active = cfg.n_params()
    log(f"model: {cfg}  params {total / 1e6:.2f}M total, {active / 1e6:.2f}M active")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tokens, merges, data, corpus_info = tokenize_corpus(args, cfg, args.out.parent)

    model, train_info = train(args, cfg, data)

    # The exported file stores token_embd as f16: evaluate what ships.
    with torch.no_grad():
        emb = model.p("token_embd.weight")
        emb.copy_(emb.half().float())
    log("final held-out evaluation")
    t_eval = time.perf_counter()
    ev, ids, inputs = {}, {}, {}
    for kind in ("code", "prose"):
        w = windows(data["held"][kind], args.seq, args.eval_limit)
        nll, ids[kind], inputs[kind] = evaluate(model, w, args.batch, routing=True)
        targets = w[:, 1:].reshape(-1)
        ev[kind] = {"tokens": int(targets.size), "nll": nll, "targets": targets}
    uni = stats.unigram_logprobs(np.concatenate(list(data["train"].values())), cfg.n_vocab)
    ppl = {}
    for kind in ("code", "prose"):
        ppl[kind] = {"tokens": ev[kind]["tokens"], "model": round(math.exp(ev[kind]["nll"]), 3),
                     "unigram": round(stats.unigram_perplexity(uni, ev[kind]["targets"]), 2),
                     "oracle_unigram": round(stats.oracle_unigram_perplexity(ev[kind]["targets"]), 2)}
    n_all = sum(ev[k]["tokens"] for k in ev)
    all_targets = np.concatenate([ev[k]["targets"] for k in ev])
    ppl["all"] = {"tokens": n_all, "model": round(math.exp(sum(ev[k]["nll"] * ev[k]["tokens"] for k in ev) / n_all), 3),
                  "unigram": round(stats.unigram_perplexity(uni, all_targets), 2),
                  "oracle_unigram": round(stats.oracle_unigram_perplexity(all_targets), 2)}
    log(f"held-out perplexity: {ppl}")
    routing = routing_report(ids, inputs, cfg, tokens)
    log(f"code-vs-prose routing total variation per layer: {routing['code_vs_prose_total_variation']}")
    t_eval = time.perf_counter() - t_eval

    tensors = {name: t.detach().numpy() for name, t in model.named_gguf()}
    desc = (f"moeviz demo model: {cfg.n_layer}-layer decoder, {cfg.n_expert} experts top-{cfg.n_expert_used}, "
            f"trained by moeviz.demo_model.train (seed {args.seed}, {args.steps} steps) on the Python "
            f"{platform.python_version()} standard library's code and documentation")
    write_gguf(args.out, cfg, tokens, merges, tensors, description=desc)
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    samples = sample_generations(args.out)
    for s in samples:
        log(f"sample (T={s['temperature']}): {s['prompt']!r} -> {s['completion']!r}")

    facts = {
        "command": "python -m moeviz.demo_model.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": args.seed, "steps": args.steps, "batch": args.batch, "seq": args.seq, "lr": args.lr,
        "warmup": args.warmup, "decay": args.decay, "time_budget_minutes": args.time_budget or None,
        "weight_decay": args.weight_decay, "aux_coef": args.aux_coef,
        "prose_share": args.prose_share, "tokens_seen": args.steps * args.batch * args.seq,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "params": {"total": total, "active": active},
        "file_bytes": args.out.stat().st_size,
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads, "torch": torch.__version__,
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "seconds": {"total": round(time.perf_counter() - t_start, 1), "train": train_info["seconds"],
                    "bpe": corpus_info.pop("bpe_seconds"), "tokenize": corpus_info.pop("tokenize_seconds"),
                    "eval": round(t_eval, 1)},
        "corpus": corpus_info,
        "perplexity": ppl,
        "history": train_info["history"],
        "routing": routing,
        "samples": samples,
    }
    facts_path = args.out.with_suffix(".json")
    facts_path.write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {facts_path}; total {facts['seconds']['total'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
