"""What the vendored llama.cpp computes for each MoE architecture: the table `ARCHS`
(gguf_info.read_model_info applies it to a file).

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


def _deepseek2_gating_default(m) -> str:   # m: the file's metadata (gguf_info._Meta)
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
