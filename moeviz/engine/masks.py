"""Expert masks as people write them: `L:E[,L:E...]`, `L:*` (every expert of model
layer L), `*:E` (expert E in every MoE layer), or the same as [layer, expert] pairs
("*" allowed for either) — expanded to the sorted (model layer, expert) pairs that
Engine.set_interventions takes. Range checks stay in set_interventions."""
from __future__ import annotations

from .sampling import SettingsError

ALL = "*"


def parse_mask(spec, moe_layers: list[int], n_expert: int) -> list[tuple[int, int]]:
    """spec: None, a string "1:3,2:*,*:0", or a list of [layer, expert] pairs (ints or "*")."""
    if spec is None or spec == "" or spec == []:
        return []
    if isinstance(spec, str):
        items = [part.strip() for part in spec.split(",")]
        pairs = []
        for item in items:
            layer, sep, expert = item.partition(":")
            if not sep or not layer.strip() or not expert.strip():
                raise SettingsError(f"mask: {item[:40]!r} is not LAYER:EXPERT (model layer index : expert id, * for all)")
            pairs.append((_part(layer.strip(), item, "layer"), _part(expert.strip(), item, "expert")))
    elif isinstance(spec, (list, tuple)):
        pairs = []
        for i, p in enumerate(spec):
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(_ok(v) for v in p)):
                raise SettingsError(f"mask[{i}] must be a [layer, expert] pair of integers (or \"*\")")
            pairs.append((p[0], p[1]))
    else:
        raise SettingsError("mask must be a string like '3:5,*:0' or a list of [layer, expert] pairs")
    out = set()
    for layer, expert in pairs:
        if layer == ALL and expert == ALL:
            raise SettingsError("mask: '*:*' would mask every expert")
        layers = list(moe_layers) if layer == ALL else [layer]
        experts = range(n_expert) if expert == ALL else [expert]
        out.update((int(a), int(b)) for a in layers for b in experts)
    return sorted(out)


def _ok(v) -> bool:
    return v == ALL or (isinstance(v, int) and not isinstance(v, bool))


def _part(text: str, item: str, what: str):
    if text == ALL:
        return ALL
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"mask: {what} {text[:20]!r} in {item[:40]!r} is not an integer or *") from None


def format_mask(pairs) -> str:
    """Pairs back in the CLI's form (for messages): "1:3,2:0"."""
    return ",".join(f"{a}:{b}" for a, b in pairs)
