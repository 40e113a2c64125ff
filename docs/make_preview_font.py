"""Writes moeviz/data/preview-font.bin, the bitmap font moeviz/preview.py draws share
previews' text with (the server has no imaging library and no browser): DejaVu Sans
Mono (Bitstream Vera licence: free to use and redistribute) rasterized by Debian's
chromium at two sizes, each glyph's coverage (0-255) kept.

    python docs/make_preview_font.py

Format: b"MVFONT1\\n", a JSON header line {"chars": str, "sizes": [{"px", "w", "h",
"baseline"}]}, then zlib-compressed uint8 coverage, size after size, [len(chars), h, w].
"""
import json
import sys
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHARS = "".join(chr(c) for c in range(32, 127)) + "“”‘’…·×–—"
SIZES = (30, 20)
FONT = "DejaVu Sans Mono"

JS = """([chars, px, font]) => {
  const c = document.createElement('canvas'), ctx = c.getContext('2d');
  ctx.font = `${px}px '${font}'`;
  const w = Math.ceil(ctx.measureText('M').width), h = Math.ceil(px * 1.25), base = Math.round(px * 0.95);
  c.width = w; c.height = h;
  const out = [];
  for (const ch of chars) {
    ctx.clearRect(0, 0, w, h);
    ctx.font = `${px}px '${font}'`;
    ctx.fillStyle = '#fff';
    ctx.textBaseline = 'alphabetic';
    ctx.fillText(ch, 0, base);
    const d = ctx.getImageData(0, 0, w, h).data;
    for (let i = 3; i < d.length; i += 4) out.push(d[i]);
  }
  return { w, h, base, data: out };
}"""


def main() -> int:
    from playwright.sync_api import sync_playwright

    sizes, blobs = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page()
        page.set_content("<html><body></body></html>")
        for px in SIZES:
            r = page.evaluate(JS, [CHARS, px, FONT])
            data = np.array(r["data"], np.uint8).reshape(len(CHARS), r["h"], r["w"])
            assert data[CHARS.index("M")].max() > 200, "the font did not render"
            sizes.append({"px": px, "w": r["w"], "h": r["h"], "baseline": r["base"]})
            blobs.append(data.tobytes())
        b.close()
    out = ROOT / "moeviz" / "data" / "preview-font.bin"
    header = json.dumps({"chars": CHARS, "sizes": sizes, "font": FONT}, ensure_ascii=False).encode()
    out.write_bytes(b"MVFONT1\n" + header + b"\n" + zlib.compress(b"".join(blobs), 9))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
