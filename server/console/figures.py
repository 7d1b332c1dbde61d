"""The console's live figures: the server's own Prometheus registry, read as one JSON document.

Counters and histograms are sent as they are (cumulative); the page takes the difference between two
reads for rates and quantiles, as Prometheus's rate() and histogram_quantile() do, so the server
keeps nothing per viewer. Models outside the caller's token scope are left out.

    {"server": {"streams", "calls", "inflight_bytes", "rss_bytes", "cpu_seconds"},
     "models": {"NAME:VERSION": {"codes": {"OK": n, ...},              calls answered, by status
                                 "latency": [["0.0002", n], ..., ["+Inf", n]],   cumulative buckets
                                 "runs": n, "rows": n}}}               onnxruntime runs, rows in them
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..auth import Scope
from ..metrics import Metrics

# The console's own polling is not traffic: left out of calls, latency and codes.
CONSOLE_METHODS = frozenset({"ConsoleModels", "ConsoleFigures"})  # (ConsoleAccess is open: not counted)
_SERVER = {
    "lstmserve_streams_in_flight": "streams",
    "lstmserve_calls_in_flight": "calls",
    "lstmserve_inflight_bytes": "inflight_bytes",
    "process_resident_memory_bytes": "rss_bytes",
    "process_cpu_seconds_total": "cpu_seconds",
}


def figures(metrics: Metrics, scope: Scope) -> dict[str, Any]:
    server: dict[str, float] = {}
    models: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"codes": defaultdict(int), "latency": defaultdict(int), "runs": 0, "rows": 0}
    )
    for family in metrics.registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name in _SERVER:
                server[_SERVER[name]] = value
                continue
            model = labels.get("model")
            if model is None or not scope.allows(model.rpartition(":")[0] or model):
                continue
            if labels.get("method") in CONSOLE_METHODS:
                continue
            if name == "lstmserve_requests_total":
                models[model]["codes"][labels["code"]] += int(value)
            elif name == "lstmserve_request_seconds_bucket":
                models[model]["latency"][labels["le"]] += int(value)
            elif name == "lstmserve_batch_rows_count":
                models[model]["runs"] = int(value)
            elif name == "lstmserve_batch_rows_sum":
                models[model]["rows"] = int(value)
    server["calls"] = server.get("calls", 1) - 1  # not the one asking for these figures
    for figures_of in models.values():
        buckets = figures_of["latency"]  # already in ascending order: the histogram's own
        figures_of["latency"] = [[le, count] for le, count in buckets.items()]
    return {"server": server, "models": models}
