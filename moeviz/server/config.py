"""What a server is started with: `ServerSettings` (the app's limits and switches) and
`ApiSettings` (the HTTP APIs'), filled in by `moeviz serve` (cli.py) or a test."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from .. import resources
from ..errors import UserError
from .connections import ConnectionLimits


def default_data_dir() -> Path:
    base = os.environ.get("MOEVIZ_DATA") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "moeviz")
    return Path(base) / "runs"


ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def check_origin(origin: str) -> str:
    """A browser origin as a page's `Origin` header gives it: scheme://host[:port], no path."""
    if not isinstance(origin, str) or not ORIGIN.fullmatch(origin):
        raise UserError(f"--allowed-origins: {str(origin)[:80]!r} is not an origin such as http://localhost:5173 "
                        "(scheme://host[:port], no path, no '*')")
    return origin


def parse_origins(text: str | None) -> tuple[str, ...]:
    """`--allowed-origins ORIGIN[,ORIGIN...]`."""
    return tuple(check_origin(o.strip()) for o in (text or "").split(",") if o.strip())


PUBLIC_MAX_TOKENS = 256           # what one request may cost on a --public server
PUBLIC_MAX_PROMPT_TOKENS = 512


@dataclasses.dataclass
class ApiSettings:
    enabled: bool = True                  # False: `serve --no-api`
    api_key: str | None = None            # `serve --api-key`: guards all that shows prompts or output (auth.py)
    store: bool = True                    # False: `serve --no-store-api`, API runs get no permalink
    show_api_runs: bool = False           # `--public` only: list API runs (prompts included) to every page
    model_id: str | None = None           # what /v1/models calls the model (default: the GGUF's file name)
    max_body_bytes: int = 4 << 20

    def __post_init__(self):
        # an empty key would let `Authorization: Bearer` with nothing after it in (issue 21 finding 4)
        if self.api_key is not None and not self.api_key.strip():
            raise UserError("--api-key must not be empty (leave it out to serve without a key)")


@dataclasses.dataclass
class ServerSettings:
    prompts_dir: Path = dataclasses.field(default_factory=resources.prompts_dir)
    max_prompt_tokens: int | None = None  # None: a prompt need only fit the (per-slot) context, as in llama-server
    max_tokens: int | None = None         # None: max_tokens clamped to what the context has left
    max_message_bytes: int = 64 * 1024
    web_dir: Path = dataclasses.field(default_factory=resources.web_dir)   # the templates and /static/
    data_dir: Path | None = None          # where permalinked runs live (None: default_data_dir())
    max_runs: int = 500
    max_run_bytes: int = 256 << 20        # all stored runs together
    max_upload_bytes: int = 32 << 20
    public: bool = False                  # a shared hosted server (docs/public-mode.md)
    rate_limit_per_minute: int = 12       # generations per client address, public mode only
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)  # public mode only
    api: ApiSettings = dataclasses.field(default_factory=ApiSettings)   # the HTTP APIs (routes/openai.py)
    metrics: bool = True                  # GET /metrics (metrics.py); False: `serve --no-metrics`
    metrics_per_expert: bool = False      # `serve --metrics-per-expert`: a series per (MoE layer, expert)
    allowed_origins: tuple[str, ...] = () # `serve --allowed-origins`: browser origins CORS answers (none by default)
    # `serve --temperature 0.2 --top-k 20 ...` (moeviz/settings.py): what a request that leaves a run setting out
    # gets, on every surface (websocket, APIs) and as the page's defaults, as llama-server's sampling flags
    run_defaults: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.allowed_origins = tuple(check_origin(o) for o in self.allowed_origins)

    def effective(self) -> "ServerSettings":
        """Public mode caps what a request may cost."""
        if not self.public:
            return self
        return dataclasses.replace(self, max_tokens=min(self.max_tokens or PUBLIC_MAX_TOKENS, PUBLIC_MAX_TOKENS),
                                   max_prompt_tokens=min(self.max_prompt_tokens or PUBLIC_MAX_PROMPT_TOKENS,
                                                         PUBLIC_MAX_PROMPT_TOKENS))
