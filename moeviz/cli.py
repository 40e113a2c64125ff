"""Command line: translates arguments into calls, and errors into one line each."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from . import __version__
from .errors import MoevizError, UserError, one_line


PUBLIC_MAX_TOKENS = 1024          # serve --public: per-request caps unless given
PUBLIC_MAX_PROMPT_TOKENS = 2048


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_model_args(p, command: str, required=False):
    p.add_argument("--model", "-m", required=required, help="GGUF model file (default: the built-in demo model)")
    _add_hub_args(p)
    _add_load_flags(p, exclude=() if command == "serve" else ("parallel",))


LOAD_FLAG_ALIASES = {"--parallel": ("-np",)}   # llama-server's short names


def _add_load_flags(p, only=None, exclude=()) -> None:
    """The load-time options' flags (--n-ctx, --kv-type, --rpc, ...) from engine/options.py's
    EngineOptions: each field's flag, help, type and choices are defined there once."""
    from .engine.options import option_fields  # noqa: PLC0415

    for f in option_fields():
        meta = f.metadata
        if not meta.get("flag") or f.name in exclude or (only is not None and f.name not in only):
            continue
        names = (meta["flag"], *LOAD_FLAG_ALIASES.get(meta["flag"], ()))
        kw = {"help": meta["help"], "dest": meta.get("dest", f.name)}
        if meta.get("type") is bool:
            p.add_argument(*names, action="store_true", **kw)
            continue
        if meta.get("choices"):
            kw["choices"] = list(meta["choices"])
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        p.add_argument(*names, type=meta.get("type", str), default=f.default, **kw)


def serve_run_settings():
    """The run settings serve takes as defaults for requests (as llama-server's --temp,
    --top-k, ...): the sampling ones; not a grammar, stop strings or logit biases, which
    belong to a request (a default grammar would refuse every response_format)."""
    from .settings import SAMPLING  # noqa: PLC0415

    return [s for s in SAMPLING if "record" in s.commands and s.name not in ("grammar", "stop", "logit_bias")]


def add_run_flags(p, command: str) -> None:
    """The run settings' flags of `command` (record, export, serve), from moeviz/settings.py:
    each with its help, default and range check. serve's flags are defaults for the
    requests that leave a setting out: absent, the table's default applies."""
    from .settings import SETTINGS  # noqa: PLC0415

    serve = command == "serve"
    chosen = {s.name for s in serve_run_settings()} if serve else None
    for s in SETTINGS:
        if (chosen is not None and s.name not in chosen) or (chosen is None and command not in s.commands):
            continue
        shown = s.default if s.default not in ("", []) else "none"
        help_text = (f"{s.help}; the default for requests that leave it out (else {shown})" if serve
                     else f"{s.help} (default: {shown})")
        if s.kind == "bool":
            p.add_argument(s.flag, action="store_true", help=s.help)
        elif s.kind == "strings":
            p.add_argument(s.flag, action="append", default=[], metavar=s.metavar, help=s.help)
        elif s.kind == "logit_bias":
            p.add_argument(s.flag, action="append", default=[], type=_bias_pair, metavar="TOKEN=BIAS",
                           help=f"{s.help}; TOKEN a token id or a text, BIAS a number or false (repeatable)")
        else:
            p.add_argument(s.flag, type=_setting_type(s), default=None if serve else s.default,
                          metavar=s.metavar or ("X" if s.kind == "float" else None), help=help_text)


def _setting_type(s):
    """argparse type for a setting: its own check, its own message."""
    def convert(text: str):
        try:
            value = int(text) if s.kind == "int" else float(text) if s.kind == "float" else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {'int' if s.kind == 'int' else 'float'} value: {text[:40]!r} "
                                             f"({s.range_text()})") from None
        try:
            return s.check(value)
        except UserError as e:
            raise argparse.ArgumentTypeError(e.one_line()) from None
    convert.__name__ = s.name
    return convert


def _bias_pair(text: str) -> list:
    """--logit-bias TOKEN=BIAS: [token id or text, bias or False] (settings.py checks the rest)."""
    token, eq, bias = text.rpartition("=")
    if not eq or not token:
        raise argparse.ArgumentTypeError(f"expected TOKEN=BIAS, got {text[:40]!r}")
    if bias.strip().lower() == "false":
        return [token, False]
    try:
        return [token, float(bias)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"the bias of {token[:40]!r} must be a number or false") from None


def settings_from_args(args):
    """The SamplingSettings a command's run flags give (add_run_flags; the others default)."""
    from .engine import SamplingSettings  # noqa: PLC0415
    from .settings import SAMPLING  # noqa: PLC0415

    return SamplingSettings(**{s.name: getattr(args, s.name) for s in SAMPLING if hasattr(args, s.name)}).validate()


def _add_hub_args(p):
    p.add_argument("-hf", "--hf-repo", default=None, metavar="OWNER/REPO[:QUANT]",
                   help="a GGUF model from the Hugging Face hub, as llama.cpp's -hf: QUANT picks the file "
                        "(default Q4_K_M, then Q8_0, then the first); downloaded once into the hub cache (HF_HOME), "
                        "HF_TOKEN for gated models, HF_ENDPOINT for a mirror")
    p.add_argument("-hff", "--hf-file", default=None, metavar="FILE",
                   help="with -hf: this file of the repository instead of choosing by QUANT")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="moeviz", description="Mixture-of-Experts routing from llama.cpp, live and replayable.")
    parser.add_argument("--version", action="version", version=f"moeviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("info", help="describe a GGUF model's MoE shape")
    p.add_argument("model", nargs="?", help="GGUF model file (default: the built-in demo model)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_hub_args(p)
    _add_load_flags(p, only=("n_gpu_layers", "rpc", "tensor_split"))   # with --rpc: the placement plan

    p = sub.add_parser("rpc-server", help="run llama.cpp's rpc-server: this machine computes layers for --rpc")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; the protocol has no authentication)")
    p.add_argument("--port", type=int, default=50052, help="port (default 50052)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: rpc-server's)")
    p.add_argument("--mem", default=None, metavar="MiB",
                   help="memory per device offered to clients, in MiB (at least 1): the server reports at most this "
                        "much free and total memory (the clients' default split follows it) and refuses buffers "
                        "beyond it (default: the device's own)")
    p.add_argument("--cache", action="store_true", help="rpc-server's local tensor cache (-c)")

    p = sub.add_parser("record", help="generate from a prompt and save the routing trace")
    _add_model_args(p, "record")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", help="file with the prompt text, or JSON chat messages [{role, content}, ...]")
    src.add_argument("--tokens-from", metavar="TRACE",
                     help="same-token replay: run exactly this trace's tokens (prompt and generated) through --model, "
                          "no sampling (the models must share the vocabulary)")
    p.add_argument("--fast", action="store_true",
                   help="with --tokens-from: prefill every token at once instead of keeping the trace's batches "
                        "(the prompt, then one token per decode; only that reproduces the same model bit for bit)")
    p.add_argument("--chat", action="store_true", help="wrap --prompt as one user message in the model's chat template")
    p.add_argument("--out", "-o", required=True, help="trace file to write (.json, or .moetrace for the binary form)")
    add_run_flags(p, "record")
    p = sub.add_parser("serve", help="serve the live visualizer")
    _add_model_args(p, "serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.add_argument("--prompts", default=None, help="prompt folder (default: the bundled prompts/)")
    p.add_argument("--max-tokens-limit", type=int, default=None, metavar="N",
                   help="largest max_tokens a client may ask for (default: none, a run ends where its context is "
                        f"full, as llama-server; --public: {PUBLIC_MAX_TOKENS})")
    p.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                   help="longest prompt a client may send, in tokens (default: what fits the context; --public: "
                        f"{PUBLIC_MAX_PROMPT_TOKENS})")
    p.add_argument("--data-dir", default=None, help="where runs behind permalinks are kept (default ~/.local/share/moeviz/runs)")
    p.add_argument("--public", action="store_true",
                   help="shared hosted server: read-only permalinks, capped requests, per-client rate limit")
    p.add_argument("--forwarded-allow-ips", default=None, metavar="ADDRS",
                   help="reverse proxies (comma-separated addresses or networks, * for any) whose X-Forwarded-For "
                        "names the client (default: none, every peer is the client)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require KEY (Authorization: Bearer KEY, x-api-key: KEY, or the page asks once) for all "
                        "that shows prompts or output: the APIs, runs, permalinks, /metrics, the websocket "
                        "(/health and /v1/models stay open)")
    p.add_argument("--allowed-origins", default=None, metavar="ORIGIN[,ORIGIN...]",
                   help="browser origins (such as http://localhost:5173) whose pages may call the APIs (CORS); "
                        "default: none")
    p.add_argument("--no-api", action="store_true", help="turn the OpenAI-compatible API (/v1/*) off")
    p.add_argument("--no-store-api", action="store_true", help="keep no permalinks for the API's runs")
    p.add_argument("--show-api-runs", action="store_true",
                   help="with --public: list the API's runs, prompts included, to every page (off: never shown)")
    p.add_argument("--no-metrics", action="store_true", help="turn GET /metrics (Prometheus text format) off")
    p.add_argument("--metrics-per-expert", action="store_true",
                   help="/metrics: also a selection counter per (MoE layer, expert): layers x experts series")
    add_run_flags(p, "serve")
    from .analysis.cli import add_stats_parser  # noqa: PLC0415

    add_stats_parser(sub)
    from .analysis.diff_cli import add_diff_parser  # noqa: PLC0415

    add_diff_parser(sub)
    from .analysis.cache_plan_cli import add_cache_plan_parser  # noqa: PLC0415

    add_cache_plan_parser(sub)
    from .prune_cli import add_prune_parser  # noqa: PLC0415

    add_prune_parser(sub)

    p = sub.add_parser("export", help="write a static demo site (replays traces; any static host serves it)")
    p.add_argument("traces", nargs="*", help="trace files to include")
    p.add_argument("--out", "-o", help="site folder to write (this, --parquet or both)")
    p.add_argument("--parquet", metavar="OUT", help="write the runs' routing as one Parquet table: run, token_index, "
                   "token_id, token, prompt, layer, slot, expert, weight (docs: moeviz/trace/parquet.py)")
    p.add_argument("--model", "-m", help="record every prompt of --prompts with this model first")
    _add_hub_args(p)
    _add_load_flags(p, exclude=("parallel",))   # with --model: loaded as record loads it
    p.add_argument("--prompts", help="prompt folder to record (default: the bundled prompts/)")
    add_run_flags(p, "export")
    return parser


def _prompt_from_args(args):
    if args.prompt is not None:
        return [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    path = Path(args.prompt_file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"prompt file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read prompt file {path}: {e}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"prompt file {path} is not valid JSON: {e}") from None
        return data.get("messages", data) if isinstance(data, dict) else data
    return [{"role": "user", "content": text}] if args.chat else text


def cmd_info(args) -> int:
    from .demo import default_model_path  # noqa: PLC0415
    from .gguf_info import describe, read_model_info  # noqa: PLC0415

    info = read_model_info(args.model or default_model_path())
    if args.rpc or args.tensor_split:
        from .llama.rpc import plan_placement  # noqa: PLC0415

        runs, text = plan_placement(info.n_layer, args.rpc, args.n_gpu_layers, args.tensor_split)
        if args.json:
            print(json.dumps({**info.to_json(), "placement": runs}, indent=2))
        else:
            print(describe(info))
            print(f"placement (--n-gpu-layers {args.n_gpu_layers}): {text}")
        return 0
    print(json.dumps(info.to_json(), indent=2) if args.json else describe(info))
    return 0


def cmd_rpc_server(args) -> int:
    from .llama.rpc_server import run_rpc_server  # noqa: PLC0415

    return run_rpc_server(host=args.host, port=args.port, threads=args.threads, mem=args.mem, cache=args.cache)


def cmd_record(args) -> int:
    from .record import record, replay_trace  # noqa: PLC0415
    from .trace import load, save  # noqa: PLC0415

    if args.fast and not args.tokens_from:
        raise UserError("--fast only applies to --tokens-from")
    source = load(args.tokens_from) if args.tokens_from else None
    prompt = None if source else _prompt_from_args(args)
    settings = settings_from_args(args)
    shown = LoadProgress(sys.stderr, _model_size(args))
    try:
        engine = _engine_from_args(args, progress=shown)
    finally:
        shown.end()
    warned = _warn_past_context(engine, args.max_tokens, None) if source is None else False
    try:
        if source is not None:
            trace = replay_trace(engine, source, source_name=Path(args.tokens_from).name, fast=args.fast,
                                 probs=args.probs, candidates=args.candidates)
        else:
            trace = record(engine, prompt, settings, probs=args.probs, candidates=args.candidates)
        save(trace, args.out)
    finally:
        engine.close()
    if not warned and source is None:
        _warn_past_context(engine, None, trace.n_tokens)
    f = trace.finish or {}
    what = f"replayed {args.tokens_from}:" if source is not None else "recorded"
    print(f"moeviz: {what} {trace.n_prompt} prompt + {trace.n_tokens - trace.n_prompt} generated tokens "
          f"x {len(trace.model['moe_layers'])} MoE layers, top-{trace.k}"
          + (f", {len(trace.mask)} experts masked" if trace.mask else "")
          + ("" if source is not None else f" (stopped: {f.get('reason')})") + f" -> {args.out}", file=sys.stderr)
    return 0


def _warn_past_context(engine, max_tokens, n_tokens) -> bool:
    """One line when a run asks for (max_tokens) or ran (n_tokens) more tokens than the
    model was trained on: llama.cpp generates on, but past that its output is unreliable."""
    n_train = getattr(engine.info, "n_ctx_train", 0) or 0
    over = max_tokens if max_tokens is not None else n_tokens
    if not n_train or over is None or over <= n_train:
        return False
    what = f"--max-tokens {over} goes" if max_tokens is not None else f"the run went {over} tokens,"
    print(f"moeviz record: warning: {what} past the {n_train} tokens {engine.info.name} was trained on; "
          "what it generates past them is unreliable", file=sys.stderr)
    return True


def _model_path(args):
    from .demo import default_model_path  # noqa: PLC0415

    return args.model or default_model_path()


def _model_size(args) -> int:
    try:
        return os.path.getsize(_model_path(args))
    except OSError:
        return 0   # the engine says what is wrong with the path


def _engine_from_args(args, progress=None):
    from .engine import Engine, EngineOptions  # noqa: PLC0415

    # every load-time flag the command has (engine/options.py); the others keep their defaults
    return Engine(_model_path(args), EngineOptions.from_args(args), progress=progress)


# Model files smaller than this load in well under a second: no progress is shown for them.
PROGRESS_MIN_BYTES = 32 << 20


class LoadProgress:
    """Model load progress on a stream (stderr): one updating line on a terminal
    ("moeviz: loading model  42%"), else a line when the load starts and at each quarter.
    Nothing for a model file under PROGRESS_MIN_BYTES. Called with 0.0 .. 1.0."""

    def __init__(self, stream, model_bytes: int, *, min_bytes: int = PROGRESS_MIN_BYTES):
        self.stream = stream
        self.enabled = model_bytes >= min_bytes
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._percent = -1      # last shown
        self._quarter = -1
        self._open_line = False

    def __call__(self, fraction: float) -> None:
        if not self.enabled:
            return
        percent = int(100 * min(1.0, max(0.0, fraction)))
        if self.tty:
            if percent != self._percent:
                self.stream.write(f"\rmoeviz: loading model {percent:3d}%")
                self._open_line = percent < 100
                if percent == 100:
                    self.stream.write("\n")
                self.stream.flush()
        elif percent // 25 > self._quarter:
            self._quarter = percent // 25
            self.stream.write(f"moeviz: loading model {percent:3d}%\n")
            self.stream.flush()
        self._percent = percent

    def end(self) -> None:
        """End an unfinished terminal line (a load that failed or was stopped)."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


def cmd_serve(args) -> int:
    """Listens at once; the model loads in the background (moeviz/server/loading.py): the
    page shows "loading model n%" meanwhile. A failed load prints its one-line error on
    stderr at once, keeps showing it for LINGER_S seconds, then exits with status 1."""
    import threading  # noqa: PLC0415
    import traceback  # noqa: PLC0415
    import webbrowser  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from .gguf_info import read_model_info  # noqa: PLC0415
    from .prompts import DEFAULT_DIR  # noqa: PLC0415
    from .server import ServerSettings  # noqa: PLC0415
    from .server.app import default_data_dir  # noqa: PLC0415
    from .server.connections import uvicorn_options  # noqa: PLC0415
    from .server.loading import engine_app  # noqa: PLC0415
    from .trace.store import check_data_dir  # noqa: PLC0415
    from .server.config import ApiSettings, parse_origins  # noqa: PLC0415

    public_cap = (lambda v, cap: cap if v is None else v) if args.public else (lambda v, cap: v)
    settings = ServerSettings(prompts_dir=Path(args.prompts) if args.prompts else DEFAULT_DIR,
                              max_prompt_tokens=public_cap(args.max_prompt_tokens, PUBLIC_MAX_PROMPT_TOKENS),
                              max_tokens=public_cap(args.max_tokens_limit, PUBLIC_MAX_TOKENS),
                              data_dir=Path(args.data_dir) if args.data_dir else None, public=args.public,
                              api=ApiSettings(enabled=not args.no_api, api_key=args.api_key,
                                              store=not args.no_store_api, show_api_runs=args.show_api_runs),
                              metrics=not args.no_metrics, metrics_per_expert=args.metrics_per_expert,
                              allowed_origins=parse_origins(args.allowed_origins),
                              run_defaults={s.name: getattr(args, s.name) for s in serve_run_settings()
                                            if getattr(args, s.name) is not None})
    cap, default = settings.effective().max_tokens, settings.run_defaults.get("max_tokens")
    if cap is not None and default is not None and default > cap:
        raise UserError(f"--max-tokens {default} is over this server's limit of {cap} (--max-tokens-limit, --public)")
    path = _model_path(args)
    if not Path(path).is_file():
        read_model_info(path)   # a mistyped path: its one-line error at once, before listening
    # before listening, and before llama.cpp sees anything: a port, the proxies, the data folder
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    server_options = uvicorn_options(settings, args.forwarded_allow_ips)   # a bad entry: its one-line UserError
    check_data_dir(settings.data_dir or default_data_dir())
    _check_port_free(args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}/"
    shown = LoadProgress(sys.stderr, _model_size(args))
    failed = []

    def ready():
        shown.end()
        engine = app.app.state.engine
        info = engine.info
        k = engine.experts_per_token
        top = f"top-{k}" + (f" (model: top-{info.n_expert_used})" if k != info.n_expert_used else "")
        masked = f", {len(engine.mask)} experts masked" if engine.mask else ""
        where = f"; {engine.placement_text()}" if engine.rpc_servers else ""
        slots = (f", {engine.parallel} parallel requests of {engine.lm.n_ctx_seq} tokens each"
                 if engine.parallel > 1 else "")
        print(f"moeviz: serving {info.name} ({info.architecture}, {len(info.moe_layers)} MoE layers x "
              f"{info.n_expert} experts, {top}{masked}, capture {engine.capture.name}{slots}"
              f"{', public mode' if args.public else ''}{where}) at {url}", flush=True)

    def load_failed(message, exc):
        shown.end()
        failed.append(message)
        if one_line(exc) is None:   # a bug: keep its traceback
            traceback.print_exception(exc, file=sys.stderr)
        print(f"moeviz serve: error: {message}", file=sys.stderr, flush=True)

    app = engine_app(lambda progress: _engine_from_args(args, progress=progress), settings, model_path=path,
                     on_progress=shown, on_ready=ready, on_failed=load_failed)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           ws_max_size=4 * settings.max_message_bytes, **server_options))
    app.on_exit = lambda: setattr(server, "should_exit", True)
    print(f"moeviz: loading {path}; the page at {url} shows the progress", flush=True)
    if args.open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    server.run()
    return 1 if failed else 0


def _check_port_free(host: str, port: int) -> None:
    """A port already taken is one line naming it, before anything claims the page shows
    progress (uvicorn would print a raw [Errno 98] and exit)."""
    import errno  # noqa: PLC0415
    import socket  # noqa: PLC0415

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} is already in use on {host}: stop what uses it, "
                                f"or pass --port with another") from None
            if e.errno == errno.EACCES:
                raise UserError(f"port {port} needs privileges on {host}: pass --port 1024 or above") from None
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def cmd_export(args) -> int:
    from .export import export_site  # noqa: PLC0415
    from .trace import load  # noqa: PLC0415

    if not args.out and not args.parquet:
        raise UserError("export needs --out (a static site) or --parquet (a routing table), or both")
    runs = [(Path(t).stem, load(t)) for t in args.traces]
    if args.model or args.prompts or not runs:
        runs += _record_prompts(args)
    if args.parquet:
        from .trace.parquet import write_parquet  # noqa: PLC0415

        rows = write_parquet(runs, args.parquet)
        print(f"moeviz: wrote {rows} routing rows of {len(runs)} runs to {args.parquet}", file=sys.stderr)
        if not args.out:
            return 0
    site = export_site(args.out, runs)
    print(f"moeviz: wrote a static site with {len(runs)} run{'' if len(runs) == 1 else 's'} to {site} "
          "(serve it with any static file host)",
          file=sys.stderr)
    return 0


def _record_prompts(args) -> list:
    """Record the library's prompts that suit the model (moeviz.prompts.suited) with one
    engine, showing progress."""
    from .demo import default_model_path  # noqa: PLC0415
    from .engine import Engine, EngineOptions  # noqa: PLC0415
    from .prompts import DEFAULT_DIR, load_prompts, model_kind, suited  # noqa: PLC0415
    from .record import record  # noqa: PLC0415
    from .trace.schema import model_description  # noqa: PLC0415

    library = list(load_prompts(args.prompts or DEFAULT_DIR).values())
    settings = settings_from_args(args)
    engine = Engine(args.model or default_model_path(), EngineOptions.from_args(args))
    kind = model_kind(model_description(engine.info)["name"])
    prompts = suited(library, kind)
    # every prompt left out, and why: written for other models than this one
    for p in library:
        if p not in prompts:
            print(f"moeviz: skipped prompt {p.name}: written for {' and '.join(p.models)} models, "
                  f"not the {kind} model", file=sys.stderr)
    if len(prompts) < len(library):
        print(f"moeviz: recording {len(prompts)} of {len(library)} prompts ({len(library) - len(prompts)} skipped)",
              file=sys.stderr)
    runs = []
    try:
        for i, p in enumerate(prompts):
            bar = "#" * (20 * i // len(prompts))
            print(f"\rrecording [{bar:<20}] {i}/{len(prompts)} {p.name:<30}", end="", file=sys.stderr, flush=True)
            runs.append((p.name, record(engine, p.prompt, settings, probs=args.probs, named=p)))
        print(f"\rrecording [{'#' * 20}] {len(prompts)}/{len(prompts)} done{' ' * 30}", file=sys.stderr)
    finally:
        engine.close()
    return runs


def cmd_stats(args) -> int:
    from .analysis.cli import cmd_stats as run  # noqa: PLC0415

    return run(args)


def cmd_diff(args) -> int:
    from .analysis.diff_cli import cmd_diff as run  # noqa: PLC0415

    return run(args)


def cmd_cache_plan(args) -> int:
    from .analysis.cache_plan_cli import cmd_cache_plan as run  # noqa: PLC0415

    return run(args)


def cmd_prune(args) -> int:
    from .prune_cli import cmd_prune as run  # noqa: PLC0415

    return run(args)


COMMANDS = {"info": cmd_info, "record": cmd_record, "serve": cmd_serve, "export": cmd_export, "stats": cmd_stats,
            "diff": cmd_diff, "rpc-server": cmd_rpc_server, "cache-plan": cmd_cache_plan,
            "prune": cmd_prune}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .hub import resolve_args  # noqa: PLC0415

        resolve_args(args)   # -hf REPO[:QUANT]: downloaded (or found in the hub cache) before anything loads
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("moeviz: interrupted", file=sys.stderr)
        return 130
    except MoevizError as e:   # the one place the CLI translates errors
        print(f"moeviz {args.command}: error: {e.one_line()}", file=sys.stderr)
        return 1
    except shutil.Error as e:  # copytree's list of (source, destination, why): the first reason
        why = e.args[0][0][2] if e.args and isinstance(e.args[0], list) and e.args[0] else str(e)
        print(f"moeviz {args.command}: error: could not copy files: {' '.join(str(why).split())}", file=sys.stderr)
        return 1
    except OSError as e:       # the user's files: name them (this is the user's own machine)
        if e.errno is None:
            raise
        print(f"moeviz {args.command}: error: {e.strerror}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
