"""Models by name: `-hf REPO[:QUANT]` and `--hf-file FILE`, as llama.cpp's own flags.

The file is chosen by llama.cpp's rule (common/download.cpp, find_best_model): with a
QUANT tag, the first GGUF whose path matches `TAG[.-]` (any case); without one, Q4_K_M,
then Q8_0, then the first GGUF of the repository. Projector, imatrix and draft files
(mmproj, imatrix, mtp-, eagle3-, dflash-, dspark-) are never the model. A split model
(`name-00001-of-00003.gguf`) is chosen by its first part and downloaded whole; llama.cpp
loads the parts from the first one.

Downloads go through huggingface_hub: its cache (HF_HOME / HF_HUB_CACHE, shared with
every other tool that uses the hub), resumed partial downloads, HF_TOKEN for gated or
private repositories, HF_ENDPOINT for a mirror, HF_HUB_OFFLINE=1 to use only what is
cached, and its progress bar on stderr. Every failure is one line naming the repository.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

DEFAULT_TAGS = ("Q4_K_M", "Q8_0")
_NOT_MODEL = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_]+$")


class HubError(UserError):
    """A model named by -hf cannot be found, reached or downloaded."""


@dataclass(frozen=True)
class HubRef:
    repo: str
    tag: str | None = None      # QUANT, upper-cased as llama.cpp does

    @classmethod
    def parse(cls, text: str) -> "HubRef":
        repo, _, tag = text.strip().partition(":")
        if not _REPO.match(repo):
            raise HubError(f"-hf wants OWNER/REPO[:QUANT] (e.g. unsloth/Qwen3-30B-A3B-GGUF:Q4_K_M), got {text!r}")
        if tag and not _TAG.match(tag):
            raise HubError(f"-hf {text}: the quantization tag after ':' may hold letters, digits and '_' only")
        return cls(repo, tag.upper() or None)


def is_model_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.endswith(".gguf") and not any(word in name for word in _NOT_MODEL)


def split_info(path: str) -> tuple[str, int, int]:
    """(prefix, index, count) of a GGUF path; (path without .gguf, 1, 1) when not split."""
    prefix = path[:-5] if path.endswith(".gguf") else path
    if m := _SPLIT.match(prefix):
        return m.group(1), int(m.group(2)), int(m.group(3))
    return prefix, 1, 1


def choose(files: list[str], tag: str | None) -> str | None:
    """llama.cpp's find_best_model over a repository's file list (its order kept)."""
    def first_part(f: str) -> bool:
        _, index, count = split_info(f)
        return count <= 1 or index == 1

    models = [f for f in files if is_model_file(f) and first_part(f)]
    for t in ([tag] if tag else DEFAULT_TAGS):
        pattern = re.compile(re.escape(t) + r"[.-]", re.IGNORECASE)
        for f in models:
            if pattern.search(f):
                return f
    if tag is None and models:
        return models[0]
    return None


def parts_of(files: list[str], primary: str) -> list[str]:
    """Every part of a split model, in order (just `primary` when it is not split)."""
    prefix, _, count = split_info(primary)
    if count <= 1:
        return [primary]
    parts = sorted(f for f in files if split_info(f)[0] == prefix and split_info(f)[2] == count)
    if len(parts) != count:
        raise HubError(f"{primary} is part 1 of {count}, but the repository holds {len(parts)} of its parts")
    return parts


def _ggufs(files: list[str]) -> str:
    names = [f for f in files if f.endswith(".gguf")]
    shown = ", ".join(names[:12]) + (f" ... ({len(names)} in all)" if len(names) > 12 else "")
    return f"its GGUF files: {shown}" if names else "it holds no GGUF file"


def _list_files(repo: str) -> list[str]:
    from huggingface_hub import HfApi, constants  # noqa: PLC0415
    from huggingface_hub.errors import (  # noqa: PLC0415
        GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    if constants.HF_HUB_OFFLINE:
        return _cached_files(repo)
    try:
        return list(HfApi().list_repo_files(repo))
    except GatedRepoError:
        raise HubError(f"{repo} is gated: accept its terms on the hub, then set HF_TOKEN to a token of yours") from None
    except RepositoryNotFoundError:
        raise HubError(f"no model repository {repo} on the hub at {constants.ENDPOINT} (a private one needs "
                       "HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo} has no main branch on the hub") from None
    except OfflineModeIsEnabled:
        return _cached_files(repo)
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubError(f"the hub at {constants.ENDPOINT} answered {status} listing {repo}") from None
    except Exception as e:   # connection refused, DNS, TLS, timeouts: one line, then the cache
        cached = _cached_files(repo, missing_ok=True)
        if cached:
            return cached
        raise HubError(f"cannot reach the hub at {constants.ENDPOINT} to list {repo} "
                       f"({type(e).__name__}); nothing of it is cached (HF_HUB_OFFLINE=1 uses only the cache)") from None


def _cached_files(repo: str, missing_ok: bool = False) -> list[str]:
    """The files of the cached snapshot of `repo` (what llama.cpp's offline mode uses too)."""
    from huggingface_hub import scan_cache_dir  # noqa: PLC0415

    try:
        cache = scan_cache_dir()
    except Exception:
        cache = None
    files: set[str] = set()
    for r in (cache.repos if cache else ()):
        if r.repo_id == repo and r.repo_type == "model":
            for rev in r.revisions:
                files.update(str(f.file_path.relative_to(rev.snapshot_path)) for f in rev.files)
    if not files and not missing_ok:
        raise HubError(f"{repo} is not in the hub cache and HF_HUB_OFFLINE is set")
    return sorted(files)


def _download(repo: str, filename: str) -> Path:
    from huggingface_hub import constants, hf_hub_download  # noqa: PLC0415
    from huggingface_hub.errors import (  # noqa: PLC0415
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError)

    try:
        return Path(hf_hub_download(repo, filename))
    except GatedRepoError:
        raise HubError(f"{repo} is gated: accept its terms on the hub, then set HF_TOKEN to a token of yours") from None
    except EntryNotFoundError:
        raise HubError(f"{repo} has no file {filename}") from None
    except LocalEntryNotFoundError:
        raise HubError(f"cannot download {filename} from {repo} at {constants.ENDPOINT} and it is not cached "
                       "(network down? the partial download resumes next time)") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubError(f"the hub at {constants.ENDPOINT} answered {status} for {repo}/{filename}") from None
    except OSError as e:
        raise HubError(f"cannot write {filename} of {repo} into the hub cache: {e.strerror or e}") from None


def resolve(name: str, hf_file: str | None = None) -> Path:
    """The local path of the model -hf NAME (and --hf-file FILE) points to, downloaded if needed.

    For a split model: the first part (the others lie beside it in the same snapshot)."""
    from huggingface_hub.utils import logging as hub_logging  # noqa: PLC0415

    hub_logging.set_verbosity_error()   # its retry warnings would bury our one line; the progress bar stays
    ref = HubRef.parse(name)
    files = _list_files(ref.repo)
    if hf_file:
        if hf_file not in files:
            raise HubError(f"{ref.repo} has no file {hf_file}; {_ggufs(files)}")
        primary = hf_file
    else:
        primary = choose(files, ref.tag)
        if primary is None:
            what = f"no GGUF file tagged {ref.tag}" if ref.tag else "no GGUF model file"
            raise HubError(f"{ref.repo} has {what}; {_ggufs(files)}")
    paths = [_download(ref.repo, f) for f in parts_of(files, primary)]
    return paths[0]


def resolve_args(args) -> None:
    """Replace -hf / --hf-file on parsed CLI arguments by the downloaded file's path in args.model."""
    name, hf_file = getattr(args, "hf_repo", None), getattr(args, "hf_file", None)
    if hf_file and not name:
        raise UserError("--hf-file needs -hf OWNER/REPO (the repository to take it from)")
    if not name:
        return
    if getattr(args, "model", None):
        raise UserError("give either a model file (--model) or -hf OWNER/REPO[:QUANT], not both")
    args.model = str(resolve(name, hf_file))
