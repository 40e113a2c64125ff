"""Owner of a loaded llama.cpp model and context (frees them; maps load failures).

The C API returns NULL for a model it cannot load, and using NULL crashes the
process, so every pointer is checked here and turned into a one-line error built
from llama.cpp's own log message.
"""
from __future__ import annotations

import ctypes
import os

from ..errors import UserError
from .abort import run_guarded
from .lib import llama_cpp
from .log import llama_log
from ..gguf_info import ModelFileError, ModelInfo, read_model_info


class ModelLoadError(UserError, RuntimeError):
    """llama.cpp refused the model or could not create a context."""


class ContextSettingsError(UserError, ValueError):
    """A context setting llama.cpp would misread (a uint32 wrapping, 0 meaning "the model's
    default") or assert on later; refused before llama.cpp sees it."""


# llama.cpp's own bounds: GGML_MAX_N_THREADS; n_ctx, n_batch and n_ubatch are uint32 there;
# LLAMA_MAX_SEQ (llama-cparams.h) for the sequences one context decodes together
MAX_THREADS = 512
MAX_TOKENS_SETTING = 2**31 - 1
MAX_SEQUENCES = 256


def check_context_settings(n_ctx, n_batch, n_ubatch, n_threads, n_gpu_layers, n_seq_max=1) -> None:
    """Whole numbers in the ranges llama.cpp takes, checked before it sees them."""
    def whole(name, value, lo, hi, what):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ContextSettingsError(f"{name} must be {what}, got {value!r}")

    whole("n_ctx (--n-ctx)", n_ctx, 1, MAX_TOKENS_SETTING, "a context size of at least 1 token")
    whole("n_batch", n_batch, 1, MAX_TOKENS_SETTING, "at least 1 token")
    if n_ubatch is not None:
        whole("n_ubatch", n_ubatch, 1, MAX_TOKENS_SETTING, "at least 1 token")
    if n_threads is not None:
        whole("threads (--threads)", n_threads, 1, MAX_THREADS, f"between 1 and {MAX_THREADS}")
    whole("n_gpu_layers (--n-gpu-layers)", n_gpu_layers, -1, MAX_TOKENS_SETTING, "-1 (all) or more")
    whole("parallel sequences (--parallel)", n_seq_max, 1, MAX_SEQUENCES, f"between 1 and {MAX_SEQUENCES}")
    if n_ctx < n_seq_max:   # llama.cpp gives each n_ctx / n_seq_max cells: none (it throws)
        raise ContextSettingsError(f"a context of {n_ctx} tokens cannot be split over {n_seq_max} parallel sequences")


_backend_ready = False


def init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        llama_log()  # route llama.cpp's log before it says anything
        llama_cpp().llama_backend_init()
        _backend_ready = True


class _ProgressReporter:
    """llama.cpp's progress callback around a Python callable.

    The ctypes callback object lives as long as this reporter (the caller keeps it for
    the whole load: llama.cpp holds only the bare function pointer). No exception may
    unwind into C, so one raised by the callable is kept in `error`, the load is stopped
    (the C callback returns false), and LoadedModel raises it once llama.cpp returns;
    KeyboardInterrupt from Ctrl-C during a long load arrives this way too.
    """

    def __init__(self, progress):
        self.progress = progress
        self.error: BaseException | None = None
        self.stopped = False
        self.last = 0.0
        self.c_callback = llama_cpp().llama_progress_callback(self._call)

    def _call(self, value, _user_data) -> bool:
        try:
            if self.error is not None or self.stopped:
                return False
            # size_done / size_data, clamped: the page and the CLI show a percentage
            self.last = max(self.last, min(1.0, max(0.0, float(value))))
            if self.progress(self.last) is False:
                self.stopped = True
                return False
            return True
        except BaseException as e:  # noqa: BLE001 - nothing may cross into C
            self.error = e
            return False


class LoadedModel:
    """A llama_model + one llama_context + its vocab; closed with close()."""

    def __init__(self, path: str | os.PathLike, *, n_ctx: int, n_batch: int, n_threads: int | None,
                 n_gpu_layers: int, configure_model=None, configure_context=None, info: ModelInfo | None = None,
                 n_ubatch: int | None = None, progress=None, n_seq_max: int = 1):
        # `progress`: called from llama.cpp's load loop with the fraction of tensor data
        # loaded (0.0 .. 1.0, never decreasing, 1.0 last); returning False stops the load
        # (ModelLoadError), and an exception it raises stops the load and is re-raised here.
        # `n_seq_max`: sequences decoded together (serve --parallel); as llama.cpp's server,
        # each gets its own KV cache stream of n_ctx / n_seq_max cells (n_ctx_seq).
        # The GGUF's metadata (`info`, when the caller has read it already: reading it parses
        # the whole tokenizer, seconds for a 150k vocabulary). Read first: a bad file gets
        # moeviz's precise ModelFileError rather than llama.cpp's load failure.
        check_context_settings(n_ctx, n_batch, n_ubatch, n_threads, n_gpu_layers, n_seq_max)
        self.info: ModelInfo = info if info is not None else read_model_info(path)
        lc = llama_cpp()
        init_backend()
        mp = lc.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        if configure_model:
            configure_model(mp)
        reporter = _ProgressReporter(progress) if progress is not None else None
        if reporter is not None:
            mp.progress_callback = reporter.c_callback
            mp.progress_callback_user_data = None
        log = llama_log()
        mark = log.mark()
        # on a guarded thread: an assert on the file's metadata refuses the file, not the process
        self.model = run_guarded(lc.llama_model_load_from_file, os.fsencode(str(path)), mp, aborted=lambda line:
                                 ModelLoadError(f"llama.cpp cannot load {path}: it aborted on the file's contents ({line})"))
        if not self.model:
            if reporter is not None and reporter.error is not None:
                raise reporter.error
            if reporter is not None and reporter.stopped:
                raise ModelLoadError(f"loading {path} was stopped")
            why = log.last_error(mark) or "unknown reason"
            raise ModelLoadError(f"llama.cpp could not load {path}: {why}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_ubatch or min(n_batch, 512)
        cp.n_seq_max = n_seq_max
        # one stream per sequence (llama.cpp's default): a sequence's cells, and so its
        # attention sums, are laid out as in a context of its own
        cp.kv_unified = False
        threads = n_threads or max(1, os.cpu_count() or 1)
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.no_perf = True
        if configure_context:
            configure_context(cp)
        def graph_refused(line: str) -> ModelLoadError:
            self.model = None   # the model stays with the parked thread: not freed
            return ModelLoadError(f"llama.cpp cannot run {path}: it aborted building its graph ({line})")

        self.ctx = run_guarded(lc.llama_init_from_model, self.model, cp, aborted=graph_refused)
        if not self.ctx:
            lc.llama_model_free(self.model)
            self.model = None
            raise ModelLoadError(f"llama.cpp could not create a context for {path}: {log.last_error(mark) or 'unknown reason'}")
        # What llama.cpp made of the settings: it pads n_ctx to a multiple of 256 but caps
        # n_batch at the n_ctx asked for (n_ctx 64: 256 cells, batches of 64), and
        # llama_decode asserts on a batch over n_batch. Callers split by these values.
        self.n_ctx = lc.llama_n_ctx(self.ctx)
        self.n_batch = lc.llama_n_batch(self.ctx)
        self.n_ubatch = lc.llama_n_ubatch(self.ctx)
        self.n_seq_max = n_seq_max
        # the cells one sequence may use (n_ctx when there is one)
        self.n_ctx_seq = min(self.n_ctx, lc.llama_n_ctx_seq(self.ctx)) if n_seq_max > 1 else self.n_ctx

    # Tokens ---------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        lc = llama_cpp()
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (lc.llama_token * n_max)()
        n = lc.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:  # buffer too small: -n is the size needed
            buf = (lc.llama_token * -n)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buf, -n, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        # A buffer per call: pieces are asked for from several threads at once (the worker
        # once per generated token, the API's threadpool rendering chat prompts), and one
        # shared buffer let a chat request's <|endoftext|> into a generated token's text.
        lc = llama_cpp()
        buf = ctypes.create_string_buffer(64)
        n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        return llama_cpp().llama_vocab_get_text(self.vocab, token).decode("utf-8", "replace")

    @property
    def add_bos(self) -> bool:
        return bool(llama_cpp().llama_vocab_get_add_bos(self.vocab))

    def bos_eos_text(self) -> tuple[str, str]:
        lc = llama_cpp()
        bos, eos = lc.llama_vocab_bos(self.vocab), lc.llama_vocab_eos(self.vocab)
        return (self.piece(bos).decode("utf-8", "replace") if bos >= 0 else "",
                self.piece(eos).decode("utf-8", "replace") if eos >= 0 else "")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp().llama_vocab_is_eog(self.vocab, token))

    # State ----------------------------------------------------------------------------
    def clear_memory(self) -> None:
        lc = llama_cpp()
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)

    def clear_sequence(self, seq: int) -> None:
        """Forget one sequence's cache (the others keep theirs)."""
        lc = llama_cpp()
        lc.llama_memory_seq_rm(lc.llama_get_memory(self.ctx), seq, -1, -1)

    def close(self) -> None:
        lc = llama_cpp()
        if getattr(self, "ctx", None):
            lc.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lc.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


__all__ = ["ContextSettingsError", "LoadedModel", "ModelLoadError", "ModelFileError"]
