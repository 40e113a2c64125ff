"""Read a model's MoE shape from its GGUF file (metadata and tensor list only).

No llama.cpp needed: `moeviz info` works before the library is built, and the
engine uses the same description to know which layers to expect routing from.

How a model routes is partly in its metadata and partly hard-coded in llama.cpp's
graph for its architecture: `ARCHS` below says, per GGUF architecture name, what the
vendored llama.cpp (llama-cpp-python 0.3.36, vendor/llama.cpp/) computes. Source
references are relative to vendor/llama.cpp/src/.

What `build_moe_ffn` (llama-graph.cpp:2007-2372) does with its arguments, which the
table's columns name:

    logits = gate_inp @ x                      (or the graph's own logits: probs_in)
           (+ gate_inp_b)                      gpt-oss's router bias, before everything
    probs  = softmax(logits)                   gating softmax
           | sigmoid(logits)                   gating sigmoid
           | logits                            gating softmax_weight (softmax comes after top-k)
           | sqrt(softplus(logits))            gating sqrt_softplus
    selection = probs (+ exp_probs_b)          selection bias: picks experts, weights stay unbiased
    if expert_group_count > 1:                 any arch (hparams.n_expert_groups, read for all in
        keep the expert_group_used_count groups with the largest top-2 sums of `selection`,
        mask the others to -inf               llama-model.cpp:1334-1335, llama-graph.cpp:2097-2118)
    ids     = top-k(selection)                 k = expert_used_count
    weights = probs[ids]
    softmax_weight: weights = softmax(weights)  (so they sum to 1 although norm_w is false)
    norm_w:         weights /= max(sum(weights), 6.1035e-5)
    w_scale not in (0, 1): weights *= w_scale  (hparams.expert_weights_scale is 0 unless read)

Which layers route: the graph loops `il < n_layer`, and n_layer is
block_count - nextn_predict_layers (llama-hparams.cpp:348-350, llama-graph.cpp:1466;
nextn_predict_layers is read for every arch, llama-model.cpp:1329): MTP / next-n layers
are never run by the main graph, so they are never MoE layers here, whatever tensors they
hold. Within those, each arch's rule (`Layers`) says which have experts.

Settings llama.cpp takes from metadata are `FromKey(key, default)`: `default` is the
value when the key is absent, REQUIRED (llama.cpp refuses the file) or NO_DEFAULT (the
gating function stays NONE and build_moe_ffn aborts, llama-graph.cpp:2071-2072).
A setting the graph hard-codes is a literal. An arch whose graph passes
hparams.expert_weights_scale but whose loader never reads the key gets scale 1.0 (the
hparams default 0 means "not scaled"), whatever the file says; likewise norm.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable

from .errors import UserError

GATING_NAMES = {1: "softmax", 2: "sigmoid", 3: "softmax_weight", 4: "sqrt_softplus"}

REQUIRED = "required"      # key absent: llama.cpp refuses to load the file
NO_DEFAULT = "no default"  # key absent: gating stays NONE and build_moe_ffn aborts


@dataclasses.dataclass(frozen=True)
class FromKey:
    """A setting llama.cpp reads from `<arch>.<key>`.

    `default`: the value when the key is absent (for gating it may be a function of the
    metadata), or REQUIRED / NO_DEFAULT. `none_is_default`: the loader replaces a gating
    of NONE (0) by the default after reading, so a stored 0 means the default too.
    `only`: the loader throws unless the value is this one.
    """
    key: str
    default: object
    none_is_default: bool = False
    only: str | None = None


@dataclasses.dataclass(frozen=True)
class Layers:
    """Which of the main graph's layers (il < block_count - nextn_predict_layers) run MoE.

    all         every layer (the loader creates experts in all of them when expert_count > 0)
    dense_lead  il >= leading_dense_block_count (`default` when the key is absent)
    ernie       il >= leading_dense_block_count (default 0) and (il + 1) % interleave_moe_layer_step == 0
    step        interleave_moe_layer_step > 0 and (il + 1) % interleave_moe_layer_step == 0
    every_n     moe_every_n_layers > 0 and il % moe_every_n_layers == 1
    ffn         feed_forward_length[il] > 0 (a layer with n_head_kv = n_ff = 0 is SSM, n_ff = 0 attention)
    router      the layer has a router tensor blk.<il>.ffn_gate_inp.weight (optional per layer)
    never       the graph never calls build_moe_ffn, whatever tensors the file has
    """
    kind: str
    default: object = 0


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    src: str                   # the main graph's build_moe_ffn call (src/models/<file>:<line>)
    hparams: str               # the file whose load_arch_hparams reads this arch's keys
    gating: str | FromKey      # "softmax" | "sigmoid" | "softmax_weight" | "sqrt_softplus" | FromKey
    norm: bool | FromKey       # norm_w: selected weights divided by their sum
    scale: float | FromKey     # w_scale
    bias: str                  # exp_probs_b selection bias: "none" | "optional" | "required" (the tensor)
    layers: Layers
    shared: str = ""           # where always-on (shared) experts come from, if any
    decoding: str = "causal"   # "causal" | "diffusion" | "embedding" | "draft"
    moe_calls: int = 1         # build_moe_ffn calls per MoE layer (moeviz records the first)
    per_layer_k: bool = False  # passes n_expert_used(il): expert_used_count may be a per-layer array
    notes: tuple[str, ...] = ()
    other_calls: tuple[str, ...] = ()  # build_moe_ffn calls outside the main graph (MTP heads)


SCALE = FromKey("expert_weights_scale", 0.0)     # absent or 0: not scaled
NORM = FromKey("expert_weights_norm", False)
GATE = FromKey("expert_gating_func", REQUIRED)
GATE_SIGMOID = FromKey("expert_gating_func", "sigmoid", none_is_default=True)
GATE_NO_DEFAULT = FromKey("expert_gating_func", NO_DEFAULT)
ALL, ROUTER, NEVER = Layers("all"), Layers("router"), Layers("never")
LEAD, LEAD_REQUIRED = Layers("dense_lead", 0), Layers("dense_lead", REQUIRED)


def _deepseek2_gating_default(m: "_Meta") -> str:
    # deepseek2.cpp:4-8,23-31: files without the key are DeepSeek V2/V2.5 (softmax), except
    # GLM 4.7 Lite: 47 or 48 main layers and a 154880-token vocabulary (vocab_size key, else
    # the tokenizer list's length) -> sigmoid.
    return "sigmoid" if m.n_main in (47, 48) and m.n_vocab == 154880 else "softmax"


# GGUF architecture name (llama-arch.cpp:9-162) -> what its graph computes. `src` is the
# main-graph call, `hparams` where the keys are read; the comments give the lines.
ARCHS: dict[str, ArchSpec] = {
    # afmoe.cpp:5,8-10,26-29 (gating default sigmoid), 77 (experts from leading_dense_block_count), 80 (bias required)
    "afmoe": ArchSpec("afmoe.cpp:214", "afmoe.cpp", GATE_SIGMOID, NORM, SCALE, "required", LEAD,
                      shared="expert_shared_count (always on)"),
    # arctic.cpp:141-151: literal softmax/true; every layer; the residual dense MLP (ffn_up, arctic.cpp:124) is no expert
    "arctic": ArchSpec("arctic.cpp:141", "arctic.cpp", "softmax", True, 1.0, "none", ALL,
                       notes=("experts run in parallel with a dense residual MLP on every layer",)),
    # bailingmoe.cpp:8-9 (norm/scale keys), 39 (router on every layer; leading_dense_block_count is read but unused)
    "bailingmoe": ArchSpec("bailingmoe.cpp:128", "bailingmoe.cpp", "softmax", NORM, SCALE, "none", ALL,
                           shared="expert_shared_count"),
    # bailingmoe2.cpp:5,9-11 (gating required), 54-58 (bias optional), 153 (dense lead)
    "bailingmoe2": ArchSpec("bailingmoe2.cpp:161", "bailingmoe2.cpp", GATE, NORM, SCALE, "optional", LEAD,
                            shared="expert_shared_count"),
    # bailingmoe3.cpp:22 (leading_dense_block_count required), 23-25 (gating required), 118 (bias), 374 (dense lead)
    "bailingmoe3": ArchSpec("bailingmoe3.cpp:381", "bailingmoe3.cpp", GATE, NORM, SCALE, "required", LEAD_REQUIRED,
                            shared="expert_shared_count", other_calls=("bailingmoe3.cpp:534",)),
    # nomic-bert-moe.cpp:5 (moe_every_n_layers, default 0), bert.cpp:165-177 (il % n == 1; literal softmax/false).
    # An encoder: llama.cpp embeds with it, it does not generate.
    "nomic-bert-moe": ArchSpec("bert.cpp:167", "nomic-bert-moe.cpp", "softmax", False, 1.0, "none",
                               Layers("every_n"), decoding="embedding"),
    # cohere2moe.cpp:15 (leading_dense_block_count required), 19-25 (gating default sigmoid), 218 (router = MoE)
    "cohere2moe": ArchSpec("cohere2moe.cpp:226", "cohere2moe.cpp", GATE_SIGMOID, NORM, SCALE, "none", LEAD_REQUIRED,
                           shared="expert_shared_count (optional)", other_calls=("cohere2moe.cpp:381",)),
    # dbrx.cpp:115-125: literal softmax/true, every layer
    "dbrx": ArchSpec("dbrx.cpp:115", "dbrx.cpp", "softmax", True, 1.0, "none", ALL),
    # deepseek.cpp:5,8 (scale key; no norm key), 136 (dense lead), 145-155: literal softmax/false (DeepSeek V1)
    "deepseek": ArchSpec("deepseek.cpp:145", "deepseek.cpp", "softmax", False, SCALE, "none", LEAD,
                         shared="expert_shared_count"),
    # deepseek2.cpp:11,20-32 (gating default: softmax, or sigmoid for GLM 4.7 Lite), 126-132 (bias optional), 646
    "deepseek2": ArchSpec("deepseek2.cpp:655", "deepseek2.cpp",
                          FromKey("expert_gating_func", _deepseek2_gating_default, none_is_default=True),
                          NORM, SCALE, "optional", LEAD, shared="expert_shared_count",
                          other_calls=("deepseek2.cpp:358",)),
    # deepseek2ocr.cpp:5-15 (gating default softmax); graph = deepseek2's (models.h:1341)
    "deepseek2-ocr": ArchSpec("deepseek2.cpp:655", "deepseek2ocr.cpp",
                              FromKey("expert_gating_func", "softmax", none_is_default=True),
                              NORM, SCALE, "optional", LEAD, shared="expert_shared_count"),
    # mistral4: deepseek2's loader and graph (models.h:1399-1403)
    "mistral4": ArchSpec("deepseek2.cpp:655", "deepseek2.cpp",
                         FromKey("expert_gating_func", _deepseek2_gating_default, none_is_default=True),
                         NORM, SCALE, "optional", LEAD, shared="expert_shared_count"),
    # deepseek32.cpp:14-16, 32 (gating required), 115-121 (bias optional), 415
    "deepseek32": ArchSpec("deepseek32.cpp:424", "deepseek32.cpp", GATE, NORM, SCALE, "optional", LEAD,
                           shared="expert_shared_count", other_calls=("deepseek32.cpp:670",)),
    # deepseek4.cpp:34-35 (norm and scale required), 51 (hash_layer_count required), 63-66 (gating must be
    # sqrt_softplus), 155-160 (every layer routed; bias except in hash layers), 1281-1310 (hash layers
    # take their experts from blk.N.ffn_gate_tid2eid by token id, not from the router).
    # 20-26: nextn_predict_layers is reset to 0 when blk.<main>.nextn.eh_proj.weight is absent.
    "deepseek4": ArchSpec("deepseek4.cpp:1294", "deepseek4.cpp",
                          FromKey("expert_gating_func", REQUIRED, only="sqrt_softplus"),
                          FromKey("expert_weights_norm", REQUIRED), FromKey("expert_weights_scale", REQUIRED),
                          "required", ALL, shared="expert_shared_count", other_calls=("deepseek4.cpp:1451",)),
    # dflash.cpp:51-79: a speculative-decoding draft; MoE only in its DeepSeek-V4 form (hyper_connection_count > 0):
    # norm, scale required, gating required and sqrt_softplus; 196-210: every layer, bias required
    "dflash": ArchSpec("dflash.cpp:975", "dflash.cpp",
                       FromKey("expert_gating_func", REQUIRED, only="sqrt_softplus"),
                       FromKey("expert_weights_norm", REQUIRED), FromKey("expert_weights_scale", REQUIRED),
                       "required", ALL, shared="expert_shared_count", decoding="draft"),
    # dots1.cpp:5,8-10 (gating optional with no default), 42-48 (bias optional), 137
    "dots1": ArchSpec("dots1.cpp:145", "dots1.cpp", GATE_NO_DEFAULT, NORM, SCALE, "optional", LEAD,
                      shared="expert_shared_count"),
    # dots3note.cpp:15 (leading_dense_block_count required), 16-18 (gating required), 117-127 (bias required), 417
    "dots3note": ArchSpec("dots3note.cpp:425", "dots3note.cpp", GATE, NORM, SCALE, "required", LEAD_REQUIRED,
                          shared="expert_shared_count"),
    # ernie4-5.cpp:8-12 (interleave_moe_layer_step required, leading dense optional; no scale key), 49-53 (bias
    # optional); ernie4-5-moe.cpp:63-64 (the rule), 81-91 (literal softmax/true)
    "ernie4_5-moe": ArchSpec("ernie4-5-moe.cpp:81", "ernie4-5.cpp", "softmax", True, 1.0, "optional", Layers("ernie"),
                             shared="expert_shared_feed_forward_length > 0"),
    # exaone-moe.cpp:16 (gating required), 17-19, 67-73 (dense below leading_dense_block_count and in nextn layers)
    "exaone-moe": ArchSpec("exaone-moe.cpp:188", "exaone-moe.cpp", GATE, NORM, SCALE, "optional", LEAD,
                           shared="expert_shared_count (optional)"),
    # gemma4.cpp:111-112 (router optional per layer), 292, 315-338: its own logits (rms-normed, per-channel
    # ffn_gate_inp.scale), literal softmax/true/1.0; a dense MLP runs beside the experts
    "gemma4": ArchSpec("gemma4.cpp:324", "gemma4.cpp", "softmax", True, 1.0, "none", ROUTER,
                       notes=("the router reads its own rms-normed input; a dense MLP runs beside the experts",)),
    # glm-dsa.cpp:36-38, 54-57 (gating default sigmoid), 149-155 (bias optional), 459
    "glm-dsa": ArchSpec("glm-dsa.cpp:468", "glm-dsa.cpp", GATE_SIGMOID, NORM, SCALE, "optional", LEAD,
                        shared="expert_shared_count", other_calls=("glm-dsa.cpp:714",)),
    # glm4-moe.cpp:10-18 (gating default sigmoid), 76-82 (bias required), 379
    "glm4moe": ArchSpec("glm4-moe.cpp:390", "glm4-moe.cpp", GATE_SIGMOID, NORM, SCALE, "required", LEAD,
                        shared="expert_shared_count", other_calls=("glm4-moe.cpp:235",)),
    # glm5-next.cpp:27-33 (gating default sigmoid), 157-166 (bias required), 616
    "glm5-next": ArchSpec("glm5-next.cpp:624", "glm5-next.cpp", GATE_SIGMOID, NORM, SCALE, "required", LEAD,
                          shared="expert_shared_count"),
    # granite.cpp:94-113 (experts on every layer when expert_count > 0), 279-289: literal softmax/true; no scale key
    "granite": ArchSpec("granite.cpp:279", "granite.cpp", "softmax", True, 1.0, "none", ALL,
                        shared="expert_shared_feed_forward_length > 0"),
    # granite-moe.cpp:18, 56-75; graph = granite's (models.h:1684)
    "granitemoe": ArchSpec("granite.cpp:279", "granite-moe.cpp", "softmax", True, 1.0, "none", ALL,
                           shared="expert_shared_feed_forward_length > 0"),
    # minicpm.cpp:61-80; graph = granite's (models.h:1745)
    "minicpm": ArchSpec("granite.cpp:279", "minicpm.cpp", "softmax", True, 1.0, "none", ALL,
                        shared="expert_shared_feed_forward_length > 0"),
    # granite-hybrid.cpp:103-116: experts on every layer (SSM and attention alike) when expert_count > 0;
    # 244, 261-271: literal softmax/true
    "granitehybrid": ArchSpec("granite-hybrid.cpp:261", "granite-hybrid.cpp", "softmax", True, 1.0, "none", ALL,
                              shared="expert_shared_feed_forward_length > 0"),
    # granite-swa.cpp:94-111, 255, 277-288: literal softmax/true
    "granite_swa": ArchSpec("granite-swa.cpp:277", "granite-swa.cpp", "softmax", True, 1.0, "none", ALL,
                            shared="expert_shared_feed_forward_length > 0"),
    # grok.cpp:70 (router on every layer), 158-168: literal softmax/true; scale key not read
    "grok": ArchSpec("grok.cpp:158", "grok.cpp", "softmax", True, 1.0, "none", ALL),
    # grovemoe.cpp:45, 133-164: logits passed in; literal softmax/true; scale key not read. A second call
    # runs the "chunk" experts (ffn_*_chexps) on the first call's output with the same logits;
    # llama-graph.cpp:2090-2093 selects on sigmoid(logits) (same top-k as softmax), 2128-2132 maps the
    # chunk call's ids to expert / experts_per_group.
    "grovemoe": ArchSpec("grovemoe.cpp:137", "grovemoe.cpp", "softmax", True, 1.0, "none", ALL, moe_calls=2,
                         other_calls=("grovemoe.cpp:153",),
                         notes=("a second build_moe_ffn per layer runs the chunk experts with the same router "
                                "logits; moeviz records the first (routed experts) only",)),
    # hunyuan-moe.cpp:41-48 (router and shared expert on every layer), 147-158: literal softmax/true
    "hunyuan-moe": ArchSpec("hunyuan-moe.cpp:147", "hunyuan-moe.cpp", "softmax", True, 1.0, "none", ALL,
                            shared="always (ffn_*_shexp)"),
    # hy-v3.cpp:7-14 (gating default sigmoid), 67-68 (router and bias optional per layer), 162
    "hy_v3": ArchSpec("hy-v3.cpp:173", "hy-v3.cpp", GATE_SIGMOID, NORM, SCALE, "optional", ROUTER,
                      shared="ffn_*_shexp tensors", other_calls=("hy-v3.cpp:334",)),
    # hy-v4.cpp:26, 33-35 (gating optional with no default), 131-137 (bias optional), 544
    "hy_v4": ArchSpec("hy-v4.cpp:552", "hy-v4.cpp", GATE_NO_DEFAULT, NORM, SCALE, "optional", LEAD,
                      shared="expert_shared_count"),
    # jamba.cpp:88 (router optional per layer), 152, 163-173: literal softmax/false
    "jamba": ArchSpec("jamba.cpp:163", "jamba.cpp", "softmax", False, 1.0, "none", ROUTER),
    # kimi-k3.cpp:37-40 (gating required), 139-147 (bias required), 315, 570-596 (logits of the full-width input)
    "kimi-k3": ArchSpec("kimi-k3.cpp:584", "kimi-k3.cpp", GATE, NORM, SCALE, "required", LEAD,
                        shared="expert_shared_count"),
    # kimi-linear.cpp:24-26 (gating required; no norm key), 144-164 (bias required), 501, 512-523 (literal true)
    "kimi-linear": ArchSpec("kimi-linear.cpp:512", "kimi-linear.cpp", GATE, True, SCALE, "required", LEAD,
                            shared="expert_shared_count"),
    # laguna.cpp:11 (leading_dense_block_count required), 13-15, 20-21, 51-55 (gating default sigmoid), 126-129, 274
    "laguna": ArchSpec("laguna.cpp:277", "laguna.cpp", GATE_SIGMOID, NORM, SCALE, "required", LEAD_REQUIRED,
                       shared="expert_shared_count (default 1)"),
    # lfm2moe.cpp:6 (dense lead optional), 10 (gating required), 40-48 (bias required); graph lfm2.cpp:115-126
    # (literal true; scale key not read), 254
    "lfm2moe": ArchSpec("lfm2.cpp:116", "lfm2moe.cpp", GATE, True, 1.0, "required", LEAD),
    # llada-moe.cpp:8 (non-causal), 40, 126-136: literal softmax/false; a diffusion model (llama-arch.cpp:1111-1120)
    "llada-moe": ArchSpec("llada-moe.cpp:126", "llada-moe.cpp", "softmax", False, 1.0, "none", ALL,
                          decoding="diffusion"),
    # llama.cpp:69-88 (experts on every layer when expert_count > 0), 182, 203-217: literal softmax/true
    "llama": ArchSpec("llama.cpp:203", "llama.cpp", "softmax", True, 1.0, "none", ALL),
    # llama-embed: llama's loader and graph (models.h:175-181), an embedding model
    "llama-embed": ArchSpec("llama.cpp:203", "llama.cpp", "softmax", True, 1.0, "none", ALL, decoding="embedding"),
    # llama4.cpp:6 (interleave_moe_layer_step required), 62 (the rule), 84-87 (shared expert), 219-229: literal
    # sigmoid/false. llama-graph.cpp:2034, 2086-2088: top-k on the raw logits, weights = sigmoid(logit)
    # (not renormalized), applied to the expert input instead of its output.
    "llama4": ArchSpec("llama4.cpp:219", "llama4.cpp", "sigmoid", False, 1.0, "none", Layers("step"),
                       shared="always (ffn_*_shexp)",
                       notes=("selects the top-k logits; the weights are their sigmoids, multiplied into the "
                              "expert's input",)),
    # maple.cpp:35-57 (router on every layer), 121-131: literal softmax/true/1.0
    "maple": ArchSpec("maple.cpp:121", "maple.cpp", "softmax", True, 1.0, "none", ALL),
    # mellum.cpp:49, 173-187: literal softmax/true; scale key not read
    "mellum": ArchSpec("mellum.cpp:173", "mellum.cpp", "softmax", True, 1.0, "none", ALL),
    # mimo2.cpp:68-72 (router and bias optional per layer), 202, 213-223: literal sigmoid/true
    "mimo2": ArchSpec("mimo2.cpp:213", "mimo2.cpp", "sigmoid", True, 1.0, "optional", ROUTER),
    # minimax-01.cpp:56, 442-452: literal softmax/true; ffn_exp_probs_b is passed but never loaded (stays null)
    "minimax-01": ArchSpec("minimax-01.cpp:442", "minimax-01.cpp", "softmax", True, 1.0, "none", ALL),
    # minimax-m2.cpp:6 (gating optional with no default), 35-39 (bias required), 130-140: literal true
    "minimax-m2": ArchSpec("minimax-m2.cpp:130", "minimax-m2.cpp", GATE_NO_DEFAULT, True, 1.0, "required", ALL),
    # minimax-m3.cpp:15-20 (gating required), 65-73 (bias required), 550
    "minimax-m3": ArchSpec("minimax-m3.cpp:561", "minimax-m3.cpp", GATE, NORM, SCALE, "required", LEAD,
                           shared="expert_shared_count"),
    # mistral3.cpp:64-74 (experts on every layer when expert_count > 0), 172, 193-207: literal softmax/true
    "mistral3": ArchSpec("mistral3.cpp:193", "mistral3.cpp", "softmax", True, 1.0, "none", ALL),
    # nemotron-h.cpp:14-16, 24-29 (norm, scale), 80-130 (MoE where feed_forward_length[il] > 0 and expert_count > 0;
    # bias required), 204-220, 286-317: literal sigmoid, per-layer top-k n_expert_used(il)
    "nemotron_h": ArchSpec("nemotron-h.cpp:303", "nemotron-h.cpp", "sigmoid", NORM, SCALE, "required",
                           Layers("ffn"), shared="always (ffn_*_shexp)", per_layer_k=True),
    # nemotron_h_moe: nemotron_h's loader and graph (models.h:1545-1549)
    "nemotron_h_moe": ArchSpec("nemotron-h.cpp:303", "nemotron-h.cpp", "sigmoid", NORM, SCALE, "required",
                               Layers("ffn"), shared="always (ffn_*_shexp)", per_layer_k=True,
                               other_calls=("nemotron-h-moe.cpp:116",)),
    # olmoe.cpp:33-35, 136-146: literal softmax/false
    "olmoe": ArchSpec("olmoe.cpp:136", "olmoe.cpp", "softmax", False, 1.0, "none", ALL),
    # openai-moe.cpp:44-51 (router with bias), 132-142: literal softmax_weight/false; the softmax over the
    # selected logits makes the weights sum to 1 (reported normalized)
    "gpt-oss": ArchSpec("openai-moe.cpp:132", "openai-moe.cpp", "softmax_weight", False, 1.0, "none", ALL,
                        notes=("router bias (ffn_gate_inp.bias) is added to the logits; the weights are a "
                               "softmax over the selected logits",)),
    # phimoe.cpp:38 (router on every layer); graph = phi3's (models.h:663), phi3.cpp:143, 153-163: literal softmax/true
    "phimoe": ArchSpec("phi3.cpp:153", "phimoe.cpp", "softmax", True, 1.0, "none", ALL),
    # qwen2moe.cpp:35-57 (router and sigmoid-gated shared expert on every layer), 132-142: literal softmax/false
    "qwen2moe": ArchSpec("qwen2moe.cpp:132", "qwen2moe.cpp", "softmax", False, 1.0, "none", ALL,
                         shared="always, gated by sigmoid(ffn_gate_inp_shexp)"),
    # qwen35moe.cpp:95-100, 496-512: literal softmax/true, every layer
    "qwen35moe": ArchSpec("qwen35moe.cpp:499", "qwen35moe.cpp", "softmax", True, 1.0, "none", ALL,
                          shared="always, gated by sigmoid(ffn_gate_inp_shexp)", other_calls=("qwen35moe.cpp:679",)),
    # qwen3moe.cpp:40-42, 137-151: literal softmax/true
    "qwen3moe": ArchSpec("qwen3moe.cpp:137", "qwen3moe.cpp", "softmax", True, 1.0, "none", ALL),
    # qwen3next.cpp:97-102 (router on every trunk layer), 567-583: literal softmax/true
    "qwen3next": ArchSpec("qwen3next.cpp:570", "qwen3next.cpp", "softmax", True, 1.0, "none", ALL,
                          shared="always, gated by sigmoid(ffn_gate_inp_shexp)", other_calls=("qwen3next.cpp:763",)),
    # qwen3vlmoe.cpp:42-44, 145-155: literal softmax/true
    "qwen3vlmoe": ArchSpec("qwen3vlmoe.cpp:145", "qwen3vlmoe.cpp", "softmax", True, 1.0, "none", ALL),
    # qwen4exp.cpp:253-257, 995-1011: literal softmax/true, every layer
    "qwen4exp": ArchSpec("qwen4exp.cpp:998", "qwen4exp.cpp", "softmax", True, 1.0, "none", ALL,
                         shared="always, gated by sigmoid(ffn_gate_inp_shexp)"),
    # refact.cpp:50-63 loads experts when expert_count > 0, but its graph (refact.cpp:118-136) calls build_ffn
    # with the (absent) dense tensors and never build_moe_ffn: nothing routes
    "refact": ArchSpec("refact.cpp:128", "refact.cpp", "softmax", True, 1.0, "none", NEVER),
    # rnd1.cpp:13 (non-causal), 42, 139-149: literal softmax/true; a diffusion model (llama-arch.cpp:1111-1120)
    "rnd1": ArchSpec("rnd1.cpp:139", "rnd1.cpp", "softmax", True, 1.0, "none", ALL, decoding="diffusion"),
    # smallthinker.cpp:21 (gating optional with no default), 59, 109 (logits of the layer input, before attention),
    # 149-159: literal true; scale key not read
    "smallthinker": ArchSpec("smallthinker.cpp:149", "smallthinker.cpp", GATE_NO_DEFAULT, True, 1.0, "none", ALL,
                             notes=("the router reads the layer's input, before attention",)),
    # step35.cpp:14-21 (gating default sigmoid), 104-107 (router and bias optional per layer), 302
    "step35": ArchSpec("step35.cpp:313", "step35.cpp", GATE_SIGMOID, NORM, SCALE, "optional", ROUTER,
                       shared="ffn_*_shexp tensors", other_calls=("step35.cpp:512",)),
}

_EXPERT_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down|gate_up)_exps\.")
_ROUTER_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_gate_inp\.weight$")
_SHARED_TENSOR = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down)_shexp\.")
_BIAS_TENSOR = re.compile(r"^blk\.(\d+)\.exp_probs_b(\.bias)?$")   # hy_v3/hy_v4 name it without ".bias"


class ModelFileError(UserError, ValueError):
    """The file is missing, not a GGUF, or damaged."""


@dataclasses.dataclass
class ModelInfo:
    path: str
    name: str
    architecture: str
    file_size: int
    n_layer: int
    n_embd: int
    n_vocab: int
    n_ctx_train: int
    n_expert: int
    n_expert_used: int
    moe_layers: list[int]
    dense_layers: list[int]          # main-graph layers without experts (MTP / next-n layers are in neither)
    n_shared_experts: int
    gating: str | None               # None: llama.cpp refuses or aborts on this file (see load_error)
    weights_normalized: bool | None
    weights_scale: float
    n_expert_groups: int
    n_group_used: int
    total_params: int
    active_params: int
    expert_params: int
    tensor_types: dict[str, int]
    expert_bytes: int = 0            # routed-expert weights, what --cpu-moe keeps in host memory
    file_bytes_other: int = 0        # every other tensor
    chat_template: str | None = dataclasses.field(default=None, repr=False)
    selection_bias: bool = False     # an exp_probs_b bias picks the experts (weights stay unbiased)
    causal: bool = True              # False: diffusion, embedding-only or draft model (see decoding)
    decoding: str = "causal"         # "causal" | "diffusion" | "embedding" | "draft"
    nextn_layers: list[int] = dataclasses.field(default_factory=list)  # MTP layers the main graph never runs
    moe_calls_per_layer: int = 1     # grovemoe: 2 (routed, then chunk experts); the first is recorded
    n_expert_used_per_layer: list[int] | None = None  # per MoE layer, only when it varies (nemotron_h)
    known_architecture: bool = False  # described by ARCHS (else guessed from metadata and tensors)
    load_error: str | None = None    # llama.cpp will refuse or abort on this file's MoE metadata
    routing_notes: list[str] = dataclasses.field(default_factory=list)
    # MoE layers whose experts come from the token id, not the router's top-k (DeepSeek-V4's
    # hash layers): a top-k override or an expert mask cannot apply there
    token_routed_layers: list[int] = dataclasses.field(default_factory=list)

    @property
    def is_moe(self) -> bool:
        return bool(self.moe_layers) and self.n_expert > 0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("chat_template")
        d["has_chat_template"] = self.chat_template is not None
        d["is_moe"] = self.is_moe
        return d


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:
        return default


def _array_len(reader, key: str) -> int:
    f = reader.fields.get(key)
    return len(f.data) if f is not None and len(f.types) > 1 else 0


class _Meta:
    """What the table's rules read: `<arch>.*` keys, the main-graph layer count, tensors."""

    def __init__(self, reader, arch: str, tensor_names: set[str]):
        self.reader, self.arch = reader, arch
        self.n_layer = int(self.get("block_count", 0) or 0)
        # deepseek2.cpp:5: the vocab_size key, else the tokenizer list's length
        self.n_vocab = int(self.get("vocab_size") or 0) if self.has("vocab_size") else _array_len(reader, "tokenizer.ggml.tokens")
        nextn = int(self.get("nextn_predict_layers", 0) or 0)
        if arch == "deepseek4" and nextn and f"blk.{self.n_layer - nextn}.nextn.eh_proj.weight" not in tensor_names:
            nextn = 0  # deepseek4.cpp:20-26: a trunk-only file runs all block_count layers
        self.n_main = max(0, self.n_layer - nextn)

    def get(self, key: str, default=None):
        return _field(self.reader, f"{self.arch}.{key}", default)

    def has(self, key: str) -> bool:
        return f"{self.arch}.{key}" in self.reader.fields

    def per_layer(self, key: str, default=0) -> list[int]:
        """A key llama.cpp reads with get_key_or_arr: one value for all layers, or an array."""
        v = self.get(key, default)
        vals = list(v) if isinstance(v, (list, tuple)) else [v] * self.n_layer
        return [int(x or 0) for x in vals] + [0] * max(0, self.n_layer - len(vals))


def _setting(arch: str, s, m: _Meta):
    """(value, error) of a literal or FromKey setting for this file."""
    if not isinstance(s, FromKey):
        return s, None
    if not m.has(s.key):
        if s.default is REQUIRED:
            return None, f"llama.cpp refuses this file: {arch}.{s.key} is missing"
        if s.default is NO_DEFAULT:
            return None, f"{arch}.{s.key} is missing: llama.cpp aborts in build_moe_ffn (gating NONE)"
        return (s.default(m) if callable(s.default) else s.default), None
    return m.get(s.key), None


def _gating(arch: str, s, m: _Meta):
    value, err = _setting(arch, s, m)
    if err or not isinstance(s, FromKey) or not m.has(s.key):
        return value, err
    raw = int(value or 0)
    if raw == 0 and s.none_is_default:
        return (s.default(m) if callable(s.default) else s.default), None
    name = GATING_NAMES.get(raw)
    if s.only and name != s.only:
        return None, f"llama.cpp refuses this file: {arch} needs {s.key} {s.only}, the file says {name or raw}"
    if name is None:
        return None, f"{arch}.{s.key} = {raw} is no gating function: llama.cpp aborts in build_moe_ffn"
    return name, None


def _moe_layers(arch: str, rule: Layers, m: _Meta, n_expert: int, router_layers: set[int]):
    """(MoE layers of the main graph, error)."""
    main = range(m.n_main)
    if rule.kind == "never" or n_expert <= 0:
        return [], None
    if rule.kind == "all":
        return list(main), None
    if rule.kind == "router":
        return [i for i in main if i in router_layers], None
    if rule.kind in ("dense_lead", "ernie"):
        if not m.has("leading_dense_block_count") and rule.default is REQUIRED:
            return [], f"llama.cpp refuses this file: {arch}.leading_dense_block_count is missing"
        lead = int(m.get("leading_dense_block_count", 0) or 0)
        if rule.kind == "dense_lead":
            return [i for i in main if i >= lead], None
    if rule.kind in ("ernie", "step"):
        if not m.has("interleave_moe_layer_step"):
            return [], f"llama.cpp refuses this file: {arch}.interleave_moe_layer_step is missing"
        step = int(m.get("interleave_moe_layer_step", 0) or 0)
        if rule.kind == "ernie":
            if step <= 0:  # ernie4-5-moe.cpp:26
                return [], f"{arch}.interleave_moe_layer_step is 0: llama.cpp asserts"
            return [i for i in main if i >= lead and (i + 1) % step == 0], None
        return [i for i in main if step > 0 and (i + 1) % step == 0], None
    if rule.kind == "every_n":
        n = int(m.get("moe_every_n_layers", 0) or 0)
        return [i for i in main if n > 0 and i % n == 1], None
    if rule.kind == "ffn":
        n_ff = m.per_layer("feed_forward_length")
        return [i for i in main if n_ff[i] > 0], None
    raise ValueError(f"unknown layer rule {rule.kind!r}")


def _check_expert_counts(p: Path, arch: str, n_expert: int, used: list[int], n_groups: int, n_group_used: int):
    """llama-model.cpp:1336-1374 asserts these for every arch (GGML_ASSERT aborts the
    process): refuse such a file before llama.cpp sees it."""
    if arch in ("hunyuan_vl", "hunyuan-dense") and n_expert <= 1:
        return  # llama-model.cpp:1337-1342: treated as dense
    k_max = max(used, default=0)
    if k_max > n_expert or (n_expert > 0 and k_max == 0):
        raise ModelFileError(f"invalid MoE metadata in {p}: {k_max} experts used per token of {n_expert}")
    if n_expert > 1024:
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert} experts (llama.cpp allows at most 1024)")
    if (n_expert == 0 and n_groups) or (n_expert and n_groups >= n_expert) or (n_groups > 1 and (
            n_expert % n_groups or not 0 < n_group_used < n_groups)):
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert} experts in {n_groups} groups, "
                             f"{n_group_used} groups used per token")


# GGUF value types -> item size in bytes (8: string, 9: array; gguf.h)
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGML_MAX_DIMS = 4


def check_gguf_layout(path: str | os.PathLike) -> None:
    """Walk a GGUF's header (metadata and tensor table) checking every count and length
    against the bytes the file has, before a reader trusts them: one flipped byte in an
    array's length makes gguf's reader loop over trillions of items (until the process is
    killed for its memory). A ModelFileError names the first field that does not fit."""
    import mmap  # noqa: PLC0415
    import struct  # noqa: PLC0415

    p = Path(path)

    def bad(what: str):
        return ModelFileError(f"damaged GGUF file {p}: {what} does not fit in the file")

    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise bad("the header")
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = 4

        def take(fmt: str, what: str):
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise bad(what)
            out = struct.unpack_from("<" + fmt, buf, pos)
            pos += n
            return out[0] if len(out) == 1 else out

        def skip(n: int, what: str) -> None:
            nonlocal pos
            if n < 0 or pos + n > size:
                raise bad(what)
            pos += n

        def string(what: str) -> None:
            skip(take("Q", what), what)

        def value(vtype: int, what: str, depth: int = 0) -> None:
            if vtype in _GGUF_SIZES:
                skip(_GGUF_SIZES[vtype], what)
            elif vtype == 8:
                string(what)
            elif vtype == 9 and depth == 0:
                itype, count = take("I", what), take("Q", what)
                if itype in _GGUF_SIZES:
                    skip(count * _GGUF_SIZES[itype], f"{what} ({count} items)")
                elif itype in (8, 9):
                    if count * 8 > size - pos:
                        raise bad(f"{what} ({count} items)")
                    for _ in range(count):
                        value(itype, what, depth + 1)
                else:
                    raise ModelFileError(f"damaged GGUF file {p}: {what} has items of unknown type {itype}")
            else:
                raise ModelFileError(f"damaged GGUF file {p}: {what} has a value of unknown type {vtype}")

        version = take("I", "the version")
        if version not in (2, 3):
            raise ModelFileError(f"unsupported GGUF version {version} in {p} (llama.cpp reads versions 2 and 3)")
        n_tensors, n_kv = take("Q", "the tensor count"), take("Q", "the metadata count")
        if n_kv * 12 > size - pos or n_tensors * 24 > size - pos:
            raise bad(f"{n_kv} metadata entries and {n_tensors} tensors")
        for i in range(n_kv):
            string(f"metadata key {i}")
            value(take("I", f"metadata entry {i}"), f"metadata entry {i}")
        for i in range(n_tensors):
            string(f"tensor {i}'s name")
            n_dims = take("I", f"tensor {i}")
            if not 1 <= n_dims <= GGML_MAX_DIMS:
                raise ModelFileError(f"damaged GGUF file {p}: tensor {i} has {n_dims} dimensions")
            skip(8 * n_dims + 4 + 8, f"tensor {i}")
    finally:
        buf.close()


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    from .gguf_header import Header  # noqa: PLC0415  (keeps `import moeviz` light)

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelFileError(f"model path is not a file: {p}")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"not a GGUF file (bad magic {magic!r}): {p}")
    check_gguf_layout(p)
    try:
        reader = Header(p)   # gguf's GGUFReader takes seconds over a 150k-token vocabulary
    except Exception:
        raise ModelFileError(f"damaged or truncated GGUF file {p} (its metadata cannot be read)") from None
    arch = str(_field(reader, "general.architecture", "unknown"))
    spec = ARCHS.get(arch)

    router_layers, shared_layers, bias_layers = set(), set(), set()
    total, expert_params, expert_bytes, other_bytes, data_end = 0, 0, 0, 0, 0
    types: dict[str, int] = {}
    names: set[str] = set()
    for t in reader.tensors:
        n = int(t.n_elements)
        total += n
        names.add(t.name)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + n
        data_end = max(data_end, int(t.data_offset) + int(t.n_bytes))
        if m := _ROUTER_TENSOR.match(t.name):
            router_layers.add(int(m.group(1)))
        if _EXPERT_TENSOR.match(t.name):
            expert_params += n
            expert_bytes += int(t.n_bytes)
        else:
            other_bytes += int(t.n_bytes)
        if m := _SHARED_TENSOR.match(t.name):
            shared_layers.add(int(m.group(1)))
        if m := _BIAS_TENSOR.match(t.name):
            bias_layers.add(int(m.group(1)))
    if data_end > p.stat().st_size:
        raise ModelFileError(f"truncated GGUF file {p}: tensor data ends at byte {data_end}, file has {p.stat().st_size}")

    meta = _Meta(reader, arch, names)
    n_layer = meta.n_layer
    n_expert = int(meta.get("expert_count", 0) or 0)
    used = meta.per_layer("expert_used_count")
    errors: list[str] = []
    if spec is None:
        # Unknown architecture: layers with a router, settings as the metadata says.
        moe = [i for i in sorted(router_layers) if i < meta.n_main] if n_expert else []
        gating = GATING_NAMES.get(int(meta.get("expert_gating_func", 0) or 0), "softmax")
        norm = meta.get("expert_weights_norm")
        norm = bool(norm) if norm is not None else None
        scale = meta.get("expert_weights_scale", 0.0)
        selection_bias = bool(bias_layers & set(moe))
        k_by_layer = [used[0] if used else 0] * len(moe)
        decoding, moe_calls, notes = "causal", 1, []
    else:
        moe, err = _moe_layers(arch, spec.layers, meta, n_expert, router_layers)
        gating, gerr = _gating(arch, spec.gating, meta)
        norm, nerr = _setting(arch, spec.norm, meta)
        scale, serr = _setting(arch, spec.scale, meta)
        notes = list(spec.notes)
        token_routed: list[int] = []
        if arch == "deepseek4":
            # deepseek4.cpp:51 (required), 155-160, 1289-1292: these layers route by token id
            n_hash = int(meta.get("hash_layer_count", 0) or 0)
            if not meta.has("hash_layer_count"):
                err = err or f"llama.cpp refuses this file: {arch}.hash_layer_count is missing"
            notes = [f"layers {', '.join(map(str, range(min(n_hash, meta.n_main))))} pick experts by token id "
                     "(ffn_gate_tid2eid), not top-k of the router; their weights are still the router's "
                     "probabilities"] if n_hash else []
            token_routed = [il for il in range(min(n_hash, meta.n_main))]
        if moe or err:  # a file nothing routes in never reaches the settings
            errors += [e for e in (err, gerr, nerr, serr) if e]
        if gating == "softmax_weight":
            norm = True  # a softmax over the selected logits: they sum to 1 although norm_w is false
        norm = bool(norm) if norm is not None else None
        selection_bias = spec.bias != "none" and bool(bias_layers & set(moe))
        # Most graphs pass n_expert_used = hparams.n_expert_used() (layer 0's) to every layer.
        k_by_layer = [used[i] for i in moe] if spec.per_layer_k else [used[0] if used else 0] * len(moe)
        decoding, moe_calls = spec.decoding, spec.moe_calls
    n_expert_used = max(k_by_layer) if k_by_layer else (used[0] if used else 0)
    n_groups = int(meta.get("expert_group_count", 0) or 0)
    _check_expert_counts(p, arch, n_expert, used, n_groups, int(meta.get("expert_group_used_count", 0) or 0))
    if moe and not all(1 <= k <= n_expert for k in k_by_layer):
        raise ModelFileError(f"invalid MoE metadata in {p}: {n_expert_used} experts used per token of {n_expert}")
    # Active parameters: everything but the unselected share of routed experts
    # (embeddings count in full, as model cards do).
    active = total - (expert_params * (n_expert - n_expert_used) // n_expert if n_expert else 0)
    n_vocab = meta.get("vocab_size") or _array_len(reader, "tokenizer.ggml.tokens")
    moe_set = set(moe)
    shared_in = shared_layers & moe_set if moe_set else shared_layers
    n_shared = int(meta.get("expert_shared_count", 0) or 0) or (1 if shared_in else 0)
    return ModelInfo(
        path=str(p), name=str(_field(reader, "general.name", p.stem)), architecture=arch,
        file_size=p.stat().st_size, n_layer=n_layer, n_embd=int(meta.get("embedding_length", 0) or 0),
        n_vocab=int(n_vocab), n_ctx_train=int(meta.get("context_length", 0) or 0),
        n_expert=n_expert, n_expert_used=n_expert_used, moe_layers=moe,
        dense_layers=[i for i in range(meta.n_main) if i not in moe_set],
        n_shared_experts=n_shared, gating=gating, weights_normalized=norm,
        weights_scale=float(scale or 0.0) or 1.0,  # build_moe_ffn: 0 (and 1) mean "not scaled"
        n_expert_groups=n_groups, n_group_used=int(meta.get("expert_group_used_count", 0) or 0),
        total_params=int(total), active_params=int(active), expert_params=int(expert_params),
        tensor_types=types, expert_bytes=expert_bytes, file_bytes_other=other_bytes,
        chat_template=_field(reader, "tokenizer.chat_template"),
        selection_bias=selection_bias, causal=decoding == "causal", decoding=decoding,
        nextn_layers=list(range(meta.n_main, n_layer)), moe_calls_per_layer=moe_calls,
        n_expert_used_per_layer=k_by_layer if len(set(k_by_layer)) > 1 else None,
        known_architecture=spec is not None, load_error="; ".join(errors) or None, routing_notes=notes,
        token_routed_layers=[il for il in token_routed if il in set(moe)] if spec is not None else [],
    )


def human_count(n: int) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def describe(info: ModelInfo) -> str:
    """The human-readable `moeviz info` text."""
    lines = [f"{info.name}  ({info.architecture}, {info.file_size / 2**20:.1f} MiB)"]
    lines.append(f"  layers        {info.n_layer}  (embedding {info.n_embd}, vocabulary {info.n_vocab}, trained context {info.n_ctx_train})"
                 + (f"; MTP layers {','.join(map(str, info.nextn_layers))} (not run by the main graph)" if info.nextn_layers else ""))
    if not info.is_moe:
        lines.append("  dense model: no routed experts (moeviz needs a Mixture-of-Experts model to record routing)")
    else:
        moe = info.moe_layers
        span = f"{moe[0]}-{moe[-1]}" if moe == list(range(moe[0], moe[-1] + 1)) else ",".join(map(str, moe))
        lines.append(f"  MoE layers    {len(moe)} ({span})" + (f"; dense layers {','.join(map(str, info.dense_layers))}" if info.dense_layers else ""))
        top_k = (f"top-{info.n_expert_used}" if info.n_expert_used_per_layer is None
                 else "top-" + "/".join(map(str, info.n_expert_used_per_layer)) + " by layer")
        lines.append(f"  experts       {info.n_expert} routed, {top_k} per token"
                     + (f", {info.n_shared_experts} shared" if info.n_shared_experts else ""))
        norm = {True: "renormalized to sum 1", False: "not renormalized", None: "normalization unknown"}[info.weights_normalized]
        lines.append(f"  gating        {info.gating or 'unknown'}, weights {norm}"
                     + (f", scaled x{info.weights_scale:g}" if info.weights_scale != 1.0 else "")
                     + (", selection bias" if info.selection_bias else ""))
        if info.n_expert_groups > 1:
            lines.append(f"  expert groups {info.n_expert_groups}, {info.n_group_used} used per token")
        for note in info.routing_notes:
            lines.append(f"  note          {note}")
    if not info.causal:
        lines.append(f"  decoding      {info.decoding} model: not decoded left to right")
    if info.load_error:
        lines.append(f"  problem       {info.load_error}")
    lines.append(f"  parameters    {human_count(info.total_params)} total, {human_count(info.active_params)} active per token"
                 + (f" ({human_count(info.expert_params)} in routed experts)" if info.expert_params else ""))
    if info.expert_bytes:
        per_layer = info.expert_bytes / max(1, len(info.moe_layers)) / 2**20
        lines.append(f"  memory        routed experts {info.expert_bytes / 2**20:.1f} MiB ({per_layer:.1f} MiB per MoE layer), "
                     f"everything else {info.file_bytes_other / 2**20:.1f} MiB")
        lines.append("                --cpu-moe keeps all routed experts in CPU memory; --n-cpu-moe N those of the first N layers;"
                     " the rest follows --n-gpu-layers")
    lines.append("  tensor types  " + ", ".join(f"{k} {human_count(v)}" for k, v in sorted(info.tensor_types.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)
