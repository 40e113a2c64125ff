"""Byte-flip fuzzing of the CLI's file readers (tests/test_fuzz.py runs it in a subprocess).

    python tests/fuzzcli.py SEED CASES COMMAND FILE [ARGS...] --report REPORT.json

Each case copies FILE with a few bytes flipped (or cut short), then runs
`moeviz COMMAND <copy> ARGS...` (or the copy where ARGS say {file}; {out} is a fresh
output path) in this process through `cli.main`, and classifies it:
`ok` (exit 0), `error` (exit 1 with one `moeviz COMMAND: error: ...` line on stderr),
`traceback` (an exception escaped main, or anything else on stderr). Before each case
its number goes to REPORT.json.progress, so a case that kills the process (a signal: a
GGML_ASSERT in llama.cpp) is known: the test restarts this driver after it and counts it.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mutate(data: bytes, rng: random.Random, region: int | None) -> bytes:
    """A few flipped bytes (mostly in the first `region` bytes: headers, metadata), or a cut."""
    buf = bytearray(data)
    if rng.random() < 0.1:
        return bytes(buf[: rng.randrange(len(buf))])
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        hi = len(buf) if region is None or rng.random() < 0.2 else min(region, len(buf))
        i = rng.randrange(hi)
        buf[i] = rng.choice([buf[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xFF])
    return bytes(buf)


def main() -> int:
    argv = sys.argv[1:]
    report_path = Path(argv[argv.index("--report") + 1])
    del argv[argv.index("--report"): argv.index("--report") + 2]
    region = None
    if "--region" in argv:
        region = int(argv[argv.index("--region") + 1])
        del argv[argv.index("--region"): argv.index("--region") + 2]
    seed, cases, command, source, *rest = argv
    from moeviz import cli  # noqa: PLC0415

    report = json.loads(report_path.read_text()) if report_path.exists() else {"progress": 0, "counts": {}, "bad": []}
    data = Path(source).read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="fuzzcli-"))
    suffix = "".join(Path(source).suffixes[-1:])
    out_dir = tmp / "out"
    for case in range(report["progress"], int(cases)):
        report["progress"] = case + 1           # a case that kills the process is skipped on restart
        report_path.write_text(json.dumps(report))
        rng = random.Random(f"{seed}/{case}")
        target = tmp / f"case{suffix}"
        target.write_bytes(mutate(data, rng, region))
        args = [str(target) if a == "{file}" else a.replace("{out}", str(out_dir / f"{case}")) for a in rest]
        if "{file}" not in rest:
            args.insert(0, str(target))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli.main([command, *args])
            except SystemExit as e:
                rc = e.code
            except BaseException:   # noqa: BLE001 - an exception out of main: a traceback
                rc = "exception"
                traceback.print_exc(file=err)
        lines = err.getvalue().strip().splitlines()
        if rc == 0:
            kind = "ok"
        elif rc == 1 and len(lines) == 1 and lines[0].startswith(f"moeviz {command}: error: "):
            kind = "error"
        else:
            kind = "traceback"
            report["bad"].append({"case": case, "rc": rc, "stderr": err.getvalue()[-1500:]})
        report["counts"][kind] = report["counts"].get(kind, 0) + 1
        for p in out_dir.glob("*"):
            with contextlib.suppress(OSError):
                os.remove(p)
    report_path.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
