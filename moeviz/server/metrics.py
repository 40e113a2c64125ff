"""`GET /metrics`: Prometheus text format (prometheus_client), docs/openai-api.md#metrics.

Named like llama.cpp's server where the two overlap (`llamacpp:prompt_tokens_total`,
`llamacpp:tokens_predicted_total`, `llamacpp:requests_processing`, ... from its
tools/server/server-task.cpp `to_metrics`), plus moeviz's own `moeviz:*` series: runs
by source and finish reason, and routing per MoE layer (expert selections, dormant
experts), per expert too with `serve --metrics-per-expert`.

Counters are updated once per finished run, from its trace, on the worker's finish path
(`ServerMetrics.run_finished`), never per token; the queue gauges are read from the
worker when scraped. Every app has its own `CollectorRegistry` (never the global one).
"""
from __future__ import annotations

import threading
from typing import Callable

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..trace.summary import dormant

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Running totals since the server started. `load()` -> (runs generating, runs waiting)."""

    def __init__(self, moe_layers: list[int], n_expert: int, load: Callable[[], tuple[int, int]],
                 per_expert: bool = False):
        self.moe_layers = list(moe_layers)
        self.n_expert = n_expert
        self.per_expert = per_expert
        self._load = load
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.prompt_seconds = 0.0
        self.predicted_tokens = 0
        self.predicted_seconds = 0.0
        self.n_tokens_max = 0
        self.routed_tokens = 0
        self.runs: dict[tuple[str, str], int] = {}          # (source, reason) -> runs
        self.counts = np.zeros((len(self.moe_layers), n_expert), np.int64)   # selections per (layer, expert)
        self.run_dormant = np.zeros(len(self.moe_layers), np.int64)          # summed over runs
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # The worker thread, once per run ------------------------------------------------------
    def run_finished(self, trace, source: str) -> None:
        """A run that ended with `done` (any reason, cancelled included): its trace's tokens,
        timings and routing."""
        finish = trace.finish or {}
        ids = trace.expert_ids
        counts = None
        if ids.shape[1:2] == (len(self.moe_layers),) and list(trace.model.get("moe_layers", [])) == self.moe_layers:
            flat = (ids.astype(np.int64) + (np.arange(len(self.moe_layers)) * self.n_expert)[None, :, None]).ravel()
            counts = np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        n_prompt = trace.n_prompt
        with self._lock:
            self.prompt_tokens += n_prompt
            self.prompt_seconds += float(finish.get("prefill_seconds", 0.0))
            self.predicted_tokens += trace.n_tokens - n_prompt
            self.predicted_seconds += float(finish.get("decode_seconds", 0.0))
            self.n_tokens_max = max(self.n_tokens_max, trace.n_tokens)
            key = (source, str(finish.get("reason", "done")))
            self.runs[key] = self.runs.get(key, 0) + 1
            if counts is not None:
                self.routed_tokens += trace.n_tokens
                self.counts += counts
                self.run_dormant += dormant(counts)["count"]

    def run_failed(self, source: str) -> None:
        self.run_ended(source, "error")

    def run_ended(self, source: str, reason: str) -> None:
        """A run that ended with nothing decoded (failed, or cancelled while queued)."""
        with self._lock:
            self.runs[(source, reason)] = self.runs.get((source, reason), 0) + 1

    # A scrape ------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self):
        with self._lock:
            prompt_tokens, prompt_seconds = self.prompt_tokens, self.prompt_seconds
            predicted_tokens, predicted_seconds = self.predicted_tokens, self.predicted_seconds
            n_tokens_max, routed_tokens, runs = self.n_tokens_max, self.routed_tokens, dict(self.runs)
            counts, run_dormant = self.counts.copy(), self.run_dormant.copy()
        processing, deferred = self._load()

        # llama.cpp's server (tools/server/server-task.cpp), same names and meanings
        yield CounterMetricFamily("llamacpp:prompt_tokens", "Number of prompt tokens processed", value=prompt_tokens)
        yield CounterMetricFamily("llamacpp:prompt_seconds", "Total time spent processing prompts",
                                  value=prompt_seconds)
        yield CounterMetricFamily("llamacpp:tokens_predicted", "Number of generation tokens processed",
                                  value=predicted_tokens)
        yield CounterMetricFamily("llamacpp:tokens_predicted_seconds", "Total time spent generating tokens",
                                  value=predicted_seconds)
        yield GaugeMetricFamily("llamacpp:n_tokens_max", "Largest observed sequence length (prompt + generation)",
                                value=n_tokens_max)
        yield GaugeMetricFamily("llamacpp:prompt_tokens_seconds",
                                "Average prompt throughput in tokens/s (over the runs since the server started)",
                                value=prompt_tokens / prompt_seconds if prompt_seconds > 0 else 0.0)
        yield GaugeMetricFamily("llamacpp:predicted_tokens_seconds",
                                "Average generation throughput in tokens/s (over the runs since the server started)",
                                value=predicted_tokens / predicted_seconds if predicted_seconds > 0 else 0.0)
        yield GaugeMetricFamily("llamacpp:requests_processing", "Number of requests processing", value=processing)
        yield GaugeMetricFamily("llamacpp:requests_deferred", "Number of requests deferred", value=deferred)

        # moeviz's own
        c = CounterMetricFamily("moeviz:runs", "Runs ended, by source (page, api) and finish reason "
                                "(eos, length, stop, context, cancelled, error)", labels=["source", "reason"])
        for (source, reason), n in sorted(runs.items()):
            c.add_metric([source, reason], n)
        yield c
        yield CounterMetricFamily("moeviz:routed_tokens", "Tokens routed (prompt and generated) in finished runs",
                                  value=routed_tokens)
        layers = [str(layer) for layer in self.moe_layers]
        c = CounterMetricFamily("moeviz:expert_selections", "Expert selections (tokens x top-k) per MoE layer",
                                labels=["layer"])
        for layer, n in zip(layers, counts.sum(axis=1).tolist()):
            c.add_metric([layer], n)
        yield c
        g = GaugeMetricFamily("moeviz:dormant_experts", "Experts of the MoE layer no finished run has selected "
                              "since the server started", labels=["layer"])
        for layer, n in zip(layers, dormant(counts)["count"].tolist()):
            g.add_metric([layer], n)
        yield g
        c = CounterMetricFamily("moeviz:run_dormant_experts", "Experts of the MoE layer a run never selected, "
                                "summed over finished runs", labels=["layer"])
        for layer, n in zip(layers, run_dormant.tolist()):
            c.add_metric([layer], n)
        yield c
        if self.per_expert:
            c = CounterMetricFamily("moeviz:expert_selections_by_expert",
                                    "Selections of one expert of one MoE layer (serve --metrics-per-expert)",
                                    labels=["layer", "expert"])
            experts = [str(e) for e in range(self.n_expert)]
            for layer, row in zip(layers, counts.tolist()):
                for expert, n in zip(experts, row):
                    c.add_metric([layer, expert], n)
            yield c
