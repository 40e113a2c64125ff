"""Share previews: a run's title and description, and a 1200 x 630 PNG of its
cumulative routing heatmap (the Open Graph image size), for permalink pages and
exported sites.

The image is the page's heatmap in the page's colours (web/js/colors.json, which the
page's heatmap.js and grid.js read too: never-selected experts dark, then violet to pale
yellow on a log scale; dense layers striped), so a link previews as what it opens to,
under the run's title, its model and its dormant figure, over a legend. Written with
numpy and zlib: no imaging library is needed at run time; the text is drawn from a
bitmap font made once from DejaVu Sans Mono (moeviz/data/preview-font.bin,
docs/make_preview_font.py).
"""
from __future__ import annotations

import functools
import json
import struct
import zlib
from pathlib import Path

import numpy as np

from .resources import web_dir
from .trace import Trace
from .trace.summary import dormant

WIDTH, HEIGHT = 1200, 630
BG = (11, 14, 20)
ACCENT = (240, 162, 59)
_COLORS = json.loads((web_dir() / "js" / "colors.json").read_text(encoding="utf-8"))
HEAT_STOPS = [(float(p), tuple(rgb)) for p, rgb in _COLORS["heat_stops"]]     # [position 0..1, rgb]
DENSE = tuple(tuple(rgb) for rgb in _COLORS["dense_stripes"])
DORMANT = HEAT_STOPS[0][1]
FG, MUTED = (230, 234, 242), (125, 135, 153)
TITLE_PX, SMALL_PX = 30, 20
# where the heatmap goes in a WIDTH x HEIGHT preview: x, y, width, height
GRID = (40, 118, WIDTH - 80, HEIGHT - 118 - 56)
FONT_FILE = Path(__file__).resolve().parent / "data" / "preview-font.bin"


@functools.cache
def _font() -> dict:
    """{px: (chars -> index, coverage [n, h, w] uint8, baseline)} from preview-font.bin."""
    data = FONT_FILE.read_bytes()
    magic, header, body = data.split(b"\n", 2)
    assert magic == b"MVFONT1", "not a moeviz preview font"
    meta = json.loads(header)
    raw = np.frombuffer(zlib.decompress(body), np.uint8)
    out, pos, chars = {}, 0, meta["chars"]
    for s in meta["sizes"]:
        n = len(chars) * s["h"] * s["w"]
        out[s["px"]] = ({c: i for i, c in enumerate(chars)}, raw[pos:pos + n].reshape(len(chars), s["h"], s["w"]),
                        s["baseline"])
        pos += n
    return out


def text_width(text: str, px: int) -> int:
    return len(text) * _font()[px][1].shape[2]


def fit(text: str, px: int, width: int) -> str:
    """text cut (with …) to fit `width` pixels."""
    n = width // _font()[px][1].shape[2]
    return text if len(text) <= n else text[: max(0, n - 1)].rstrip() + "…"


def draw_text(img: np.ndarray, x: int, y: int, text: str, color, px: int) -> int:
    """Draws `text` with its top-left at (x, y), blending each glyph's coverage over the
    image; characters outside the font read as '?'. Returns the x after the text."""
    index, glyphs, _ = _font()[px]
    _, h, w = glyphs.shape
    col = np.array(color, float)
    for ch in text:
        if x + w > img.shape[1]:
            break
        a = glyphs[index.get(ch, index["?"])][: max(0, min(h, img.shape[0] - y))].astype(float)[..., None] / 255
        box = img[y:y + a.shape[0], x:x + w]
        box[:] = (box * (1 - a) + col * a).round().astype(np.uint8)
        x += w
    return x


def _palette() -> np.ndarray:
    x = np.arange(256) / 255
    pos = np.array([p for p, _ in HEAT_STOPS])
    rgb = np.array([c for _, c in HEAT_STOPS], dtype=float)
    return np.stack([np.interp(x, pos, rgb[:, i]) for i in range(3)], axis=1).round().astype(np.uint8)


def heat_levels(counts: np.ndarray, scale: int) -> np.ndarray:
    """Palette index per count on the page's log scale up to `scale` (web/js/heatmap.js
    heatLevel: the same operations, so the same index): 0 for none, else
    1 + floor(254 log(1 + c) / log(1 + scale)), at most 255."""
    level = 1 + np.minimum(254, np.floor(254 * np.log1p(counts) * (1 / np.log1p(scale))))
    return np.where(counts > 0, level, 0).astype(int)


def selection_counts(trace: Trace) -> np.ndarray:
    """int [n_moe_layers, n_expert]: how often each expert was selected over the whole run."""
    ids = trace.expert_ids
    L, E = ids.shape[1], trace.model["n_expert"]
    offsets = (np.arange(L, dtype=np.int32) * E)[None, :, None]
    counts = np.zeros(L * E, np.int64)
    for s in range(0, ids.shape[0], 16384):       # in blocks: no run-sized temporary
        counts += np.bincount((ids[s:s + 16384] + offsets).ravel(), minlength=L * E)
    return counts.reshape(L, E)


def render_png(trace: Trace, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The run's cumulative heatmap over all its tokens under its title, model and dormant
    figure, with a legend, as PNG bytes (WIDTH x HEIGHT: the grid at GRID)."""
    model = trace.model
    n_layer, moe_layers, E = model["n_layer"], list(model["moe_layers"]), model["n_expert"]
    counts = selection_counts(trace)
    top = max(1, int(counts.max()))
    scale = 2 ** int(np.ceil(np.log2(top)))          # as the page: a power of two over the maximum
    levels = heat_levels(counts, scale)
    pal = _palette()
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BG
    img[:6, :] = ACCENT                                # a thin accent bar: moeviz's colour on top
    gx0, gy0 = GRID[0], GRID[1]
    gw, gh = width - 2 * gx0, height - gy0 - (HEIGHT - GRID[1] - GRID[3])
    _captions(img, trace, counts, scale, gx0, gy0 + gh)
    xs, ys = np.arange(gw), np.arange(gh)
    col = xs * E // gw                                 # grid column of each pixel
    row = ys * n_layer // gh                           # model layer of each pixel row
    cell = np.zeros((n_layer, E, 3), np.uint8)
    moe_row = {layer: r for r, layer in enumerate(moe_layers)}
    for layer in range(n_layer):
        if layer in moe_row:
            cell[layer] = pal[levels[moe_row[layer]]]
    grid = cell[row][:, col]
    dense = np.array([layer not in moe_row for layer in range(n_layer)])[row]
    if dense.any():                                    # dense layers: diagonal stripes, as in the page
        stripe = (((xs[None, :] + ys[:, None]) >> 3) & 1).astype(bool)
        band = np.where(stripe[..., None], np.array(DENSE[0], np.uint8), np.array(DENSE[1], np.uint8))
        grid[dense] = band[dense]
    # a gap between cells where they are big enough to show one
    if gw / E >= 6:
        grid[:, np.r_[False, col[1:] != col[:-1]]] = BG
    if gh / n_layer >= 6:
        grid[np.r_[False, row[1:] != row[:-1]], :] = BG
    img[gy0:gy0 + gh, gx0:gx0 + gw] = grid
    return encode_png(img)


def _captions(img: np.ndarray, trace: Trace, counts: np.ndarray, scale: int, x0: int, grid_bottom: int) -> None:
    """Title, model and dormant figure above the grid; the legend below it."""
    m, width = trace.model, img.shape[1]
    # masked experts (settings.mask) could not be chosen: counted apart, not as dormant
    masked = np.zeros(counts.shape, bool)
    rows = {layer: r for r, layer in enumerate(m["moe_layers"])}
    for layer, e in trace.mask:
        masked[rows[layer], e] = True
    n_open, n_masked = counts.size - int(masked.sum()), int(masked.sum())
    n_dormant = int(((counts == 0) & ~masked).sum())
    figure = (f"{n_dormant} of {n_open} experts dormant ({100 * n_dormant / max(1, n_open):.1f}%)"
              + (f", {n_masked} masked" if n_masked else ""))
    draw_text(img, x0, 24, fit(run_title(trace, limit=200), TITLE_PX, width - 2 * x0), FG, TITLE_PX)
    k = trace.k
    model = f"{m['name']} · {len(m['moe_layers'])} layers × {m['n_expert']} experts, top-{k}"
    right = width - x0 - text_width(figure, SMALL_PX)
    draw_text(img, x0, 72, fit(model, SMALL_PX, right - x0 - 24), MUTED, SMALL_PX)
    draw_text(img, right, 72, figure, ACCENT, SMALL_PX)
    # legend: the dormant colour, the ramp from 1 to the scale's top, and the name
    y, pal = grid_bottom + 20, _palette()
    img[y:y + 16, x0:x0 + 16] = DORMANT
    x = draw_text(img, x0 + 24, y - 2, "never chosen (dormant)", MUTED, SMALL_PX) + 32
    ramp = pal[np.linspace(1, 255, 160).astype(int)]
    img[y:y + 16, x:x + 160] = ramp[None, :, :]
    draw_text(img, x + 172, y - 2, f"chosen 1 to {scale}× (log scale)", MUTED, SMALL_PX)
    draw_text(img, width - x0 - text_width("moeviz", SMALL_PX), y - 2, "moeviz", ACCENT, SMALL_PX)


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG from an array [height, width, 3] of uint8."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()   # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def prompt_text(prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt or [] if m.get("role") == "user"]
    return users[-1] if users else (prompt[-1]["content"] if prompt else "")


def run_title(trace: Trace, limit: int = 48) -> str:
    """What the page calls the run (web/js/runname.js): its prompt's title, else its opening words."""
    title = str(trace.settings.get("prompt_title") or "").strip()
    if title:
        return title
    text = " ".join(prompt_text(trace.prompt).split())
    if not text:
        return "untitled run"
    return f"“{text if len(text) <= limit else text[:limit - 1].rstrip() + '…'}”"


def used_experts(trace: Trace) -> np.ndarray:
    """bool [n_moe_layers, n_expert]: selected at least once over the run. Read in blocks
    of tokens, stopping once every expert of every layer is used (a long real run
    usually gets there early): a permalink page's description of a 100k-token run
    need not read all its expert ids."""
    ids = trace.expert_ids
    L, E = ids.shape[1], trace.model["n_expert"]
    offsets = (np.arange(L, dtype=np.intp) * E)[None, :, None]
    used = np.zeros(L * E, bool)
    for s in range(0, ids.shape[0], 4096):
        used[(ids[s:s + 4096] + offsets).ravel()] = True
        if used.all():
            break
    return used.reshape(L, E)


def run_description(trace: Trace) -> str:
    m = trace.model
    used = used_experts(trace)
    n_dormant, cells = dormant(used)["total"], used.size
    n_prompt = trace.n_prompt
    return (f"{n_prompt} prompt + {trace.n_tokens - n_prompt} generated tokens through {m['name']} "
            f"({len(m['moe_layers'])} MoE layers × {m['n_expert']} experts, top-{m['n_expert_used']}): "
            f"{n_dormant} of {cells} experts never chosen. Watch each token's routing, layer by layer.")
