"""The console's live figures: the server's own metrics (server/metrics.py), read as one JSON document.

Counters and histograms are sent as they are (cumulative); the page takes the difference between two
reads for rates and quantiles, as Prometheus's rate() and histogram_quantile() do, so the server
keeps nothing per viewer. Models outside the caller's token scope are left out; so are calls refused
before a model was known ("-"), for a token limited to some models.

    {"server": {"streams", "calls", "inflight_bytes", "rss_bytes", "cpu_seconds"},   (rss and cpu: Linux)
     "models": {"NAME:VERSION": {"codes": {"OK": n, ...},              calls answered, by status
                                 "latency": [["0.0002", n], ..., ["+Inf", n]],   cumulative buckets
                                 "runs": n, "rows": n}}}               onnxruntime runs, rows in them
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from ..auth import Scope
from ..metrics import Metrics, name_of

_PROCESS = {"process_resident_memory_bytes": "rss_bytes", "process_cpu_seconds_total": "cpu_seconds"}


def figures(metrics: Metrics, scope: Scope) -> dict[str, Any]:
    models: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"codes": defaultdict(int), "latency": defaultdict(int), "runs": 0, "rows": 0}
    )

    def of(sample: Sample) -> dict[str, Any] | None:
        label = sample.labels["model"]
        return models[label] if scope.allows(name_of(label)) else None

    for sample in _samples(metrics.requests):
        if sample.name.endswith("_total") and (model := of(sample)) is not None:
            model["codes"][sample.labels["code"]] += int(sample.value)
    for sample in _samples(metrics.request_seconds):
        if sample.name.endswith("_bucket") and (model := of(sample)) is not None:
            model["latency"][sample.labels["le"]] += int(sample.value)  # in the histogram's own order
    for sample in _samples(metrics.batch_rows):
        if (model := of(sample)) is not None:
            if sample.name.endswith("_count"):
                model["runs"] = int(sample.value)
            elif sample.name.endswith("_sum"):
                model["rows"] = int(sample.value)
    server = {
        "streams": _value(metrics.streams),
        "calls": _value(metrics.calls),
        "inflight_bytes": _value(metrics.inflight_bytes),
        **{_PROCESS[s.name]: s.value for s in _samples(metrics.process) if s.name in _PROCESS},
    }
    for model in models.values():
        model["latency"] = list(model["latency"].items())
    return {"server": server, "models": models}


def _samples(collector: Collector) -> Iterator[Sample]:
    for family in collector.collect():
        yield from family.samples


def _value(gauge: Collector) -> float:
    return next(_samples(gauge)).value
