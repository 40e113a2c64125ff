"""`ServerContext`: what every route module shares, built once per app by `create_app`.

The route modules (routes/*.py) take it and read what they need; none builds state of
its own, so one app's store, worker and live list are the same object in every surface.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses

from ..page import render_page
from ..prompts import load_prompts
from ..trace.schema import model_description
from ..trace.store import RunStore
from .auth import KeyGuard
from .config import ServerSettings, default_data_dir
from .connections import WebsocketLimits
from .limits import RateLimiter
from .live import LiveRuns
from .metrics import ServerMetrics
from .stored import StoredRuns
from .uploads import MAX_READING
from .worker import GenerationWorker


@dataclasses.dataclass(eq=False)
class ServerContext:
    settings: ServerSettings              # already `.effective()`: public mode's caps applied
    engine: object
    model: dict                           # the model's description, as the page and traces carry it
    prompts: dict                         # the prompt library by name
    store: RunStore                       # permalinked runs
    stored: StoredRuns                    # cached reads of stored runs (titles, heads, previews)
    live_runs: LiveRuns                   # runs in flight and recent, from any source
    worker: GenerationWorker
    metrics: ServerMetrics | None         # None: `serve --no-metrics`
    limiter: RateLimiter | None           # public mode: generations per client address
    sockets: WebsocketLimits | None       # public mode: websockets per address, idle timeout
    uploads_reading: asyncio.Semaphore    # upload bodies held in memory at once
    guard: KeyGuard                       # `serve --api-key` over everything that shows prompts or output
    # per token: perf_counter when the engine yielded it, when its message was queued for
    # the event loop, when the loop took it, and after the websocket send (bench/server_latency.py)
    token_latency: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=10_000))

    @classmethod
    def build(cls, engine, settings: ServerSettings) -> "ServerContext":
        store = RunStore(settings.data_dir or default_data_dir(), settings.max_runs, settings.max_run_bytes)
        live_runs = LiveRuns(public=settings.public, show_api_runs=settings.api.show_api_runs,
                             default_k=engine.default_interventions[0])
        holder: dict = {}
        metrics = ServerMetrics(engine.info.moe_layers, engine.info.n_expert, lambda: holder["worker"].load(),
                                per_expert=settings.metrics_per_expert) if settings.metrics else None
        worker = holder["worker"] = GenerationWorker(engine, settings.max_prompt_tokens, store, live_runs, metrics)
        return cls(settings=settings, engine=engine, model={**model_description(engine.info)},
                   prompts=load_prompts(settings.prompts_dir), store=store, stored=StoredRuns(store),
                   live_runs=live_runs, worker=worker, metrics=metrics,
                   limiter=RateLimiter(settings.rate_limit_per_minute) if settings.public else None,
                   sockets=WebsocketLimits(settings.limits) if settings.public else None,
                   uploads_reading=asyncio.Semaphore(MAX_READING), guard=KeyGuard(settings.api.api_key))

    def render(self, mode: str, page_model: dict | None = None, **context) -> str:
        """The page (web/index.html) in `mode` ("live" or "replay")."""
        return render_page(mode, model=page_model or self.model, capture=self.engine.capture.name,
                           public=self.settings.public, web_dir=self.settings.web_dir, **context)
