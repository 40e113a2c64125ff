"""Files are never half-written: every writer of a user-visible file (traces, GGUFs,
Parquet tables) writes a temporary file beside it and renames it into place."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced_whole(dst: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `dst` to write; when the block ends normally it
    replaces `dst` (mode 0644) in one rename, and on any exception it is removed, so `dst`
    is either the old file or the whole new one, never a part."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
