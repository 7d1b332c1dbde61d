"""One served model version: an onnxruntime session plus what its metadata says about it."""

from __future__ import annotations

import ctypes
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lstmserve import contract, layout
from lstmserve.codec import LayerArrays
from lstmserve.model.config import LSTMConfig  # a dataclass: importing it does not import torch

from .errors import ModelLoadError
from .request import State

Feed = dict[str, np.ndarray]  # onnxruntime's inputs by the model's names

log = logging.getLogger("lstmserve.server")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: int
    config: LSTMConfig
    fingerprint: str
    quantization: str
    lstmserve_version: str
    accepts_state_from: tuple[str, ...] = ()  # models whose states it also takes (as exported)


def quiet_onnxruntime() -> None:
    """A server reaches nothing outside its callers, and its log says what it decided, not what
    onnxruntime noticed on the way: errors only. (onnxruntime-gpu 1.31 otherwise warns at each session
    "No registered plugin EP device found for 'CUDAExecutionProvider'" and then uses it all the same;
    it still warns once, "Failed to persist telemetry device ID", where its home folder is read-only,
    as in the container: harmless.)"""
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    ort.set_default_logger_severity(3)


Providers = list  # of names, or (name, options) pairs, as onnxruntime takes them
_warned_cpu = False  # the CUDA fallback is said once, not once per model version


def providers_for(
    device: str,
    device_id: int = 0,
    mem_limit_mb: int = 0,
    arena: str = "next_power_of_two",
    tf32: bool = False,
) -> Providers:
    """The execution providers for a device; CUDA falls back to CPU with a warning where absent."""
    if device == "cuda":
        if hasattr(ort, "preload_dlls"):
            # onnxruntime-gpu from PyPI finds NVIDIA's runtime wheels (nvidia-cudnn-*, nvidia-cublas...)
            # in site-packages this way, as its docs say: the image carries no CUDA toolkit.
            try:
                ort.preload_dlls()
            except Exception as exc:  # noqa: BLE001 (whatever a missing library raises, we fall back)
                log.warning("device cuda: onnxruntime could not load the CUDA libraries (%s)", exc)
        if "CUDAExecutionProvider" in ort.get_available_providers() and not _has_driver():
            # onnxruntime-gpu would try, print three lines of its own about libcuda, and fall back.
            log.warning(
                "device cuda asked for, but this machine has no NVIDIA driver (libcuda.so.1): using cpu"
            )
            return ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            options = {
                "device_id": device_id,
                "arena_extend_strategy": "kSameAsRequested"
                if arena == "same_as_requested"
                else "kNextPowerOfTwo",
                # onnxruntime's default lets cuDNN's LSTM round its products to TF32: on an H200 that
                # put final_c 5e-4 from the CPU's (scaled), past export's fp32 tolerance. Off: fp32.
                "use_tf32": int(tf32),
            }
            if mem_limit_mb:
                options["gpu_mem_limit"] = mem_limit_mb << 20
            return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
        log.warning("device cuda asked for, but this onnxruntime has no CUDA execution provider: using cpu")
    return ["CPUExecutionProvider"]


class ModelRuntime:
    def __init__(self, path: Path, name: str, version: int, providers: Providers, intra_op_threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # bad requests are answered by us, not logged by ORT
        # NOTE: the arena keeps the peak of the largest run for good (RSS 90 -> 694 MB after one
        # 1 x 131000-step call, ~500 MB kept); without it memory goes back, at no cost measured here
        # (one-step calls 14-15 us either way).
        options.enable_cpu_mem_arena = False
        self.session = _session(path, options, providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in (contract.META_CONFIG, contract.META_FINGERPRINT) if key not in meta]
        if missing:
            raise ModelLoadError(f"{path}: not exported by lstmserve (no {', '.join(missing)} metadata)")
        try:
            config = LSTMConfig.from_json(meta[contract.META_CONFIG])
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise ModelLoadError(f"{path}: bad {contract.META_CONFIG} metadata ({exc})") from None
        self.info = ModelInfo(
            name=name,
            version=version,
            config=config,
            fingerprint=meta[contract.META_FINGERPRINT],
            quantization=meta.get(contract.META_QUANTIZATION, "none"),
            lstmserve_version=meta.get(contract.META_VERSION, ""),
            accepts_state_from=_accepts(path, meta.get(contract.META_ACCEPTS_STATE_FROM, "[]")),
        )
        if self.info.quantization != "none" and self.session.get_providers()[0] != "CPUExecutionProvider":
            # int8's DynamicQuantizeLSTM has a CPU kernel only: on CUDA the LSTMs would run on the CPU
            # anyway, behind copies, while GetModel, metrics and device/cuda health said cuda.
            log.warning(
                "%s v%d is %s: onnxruntime runs its LSTMs on the CPU only, so it is served on the CPU",
                name,
                version,
                self.info.quantization,
            )
            self.session = _session(path, options, ["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        want = contract.output_names(config.num_layers, config.head != "none")
        if self.output_names != want:
            raise ModelLoadError(f"{path}: outputs {self.output_names} do not follow the contract {want}")
        self.providers = self.session.get_providers()  # what onnxruntime actually uses, first first
        _say_fallback(providers, self.providers)
        self.device = _device_of(self.session)
        self.path = path
        self.label = f"{name}:{version}"  # the metrics' `model` label

    @property
    def labels(self) -> list[str]:
        return list(self.info.config.labels)

    def run(self, feed: Feed) -> dict[str, np.ndarray]:
        """One onnxruntime call; blocking. The batcher runs small batches on the event loop (cheaper
        than a thread's hand-over) and the rest in a worker thread; ORT releases the GIL."""
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    # The model's tensor names, mapped here only: a state goes in as initial_c_{l}/initial_h_{l} and
    # comes out as final_c_{l}/final_h_{l}; every other layer of the server holds a `State`.

    def feed(self, input: np.ndarray, lengths: np.ndarray, layers: LayerArrays) -> Feed:
        """onnxruntime's inputs for rows of `input` that start from `layers`."""
        feed = {contract.INPUT: input, contract.SEQUENCE_LENGTHS: lengths}
        for layer, (c, h) in enumerate(layers):
            feed[contract.initial_c(layer)], feed[contract.initial_h(layer)] = c, h
        return feed

    def final_state(self, outputs: dict[str, np.ndarray]) -> State:
        """The state a run ended in, stamped with this model's fingerprint."""
        layers = range(self.info.config.num_layers)
        return State(
            self.info.fingerprint,
            [(outputs[contract.final_c(layer)], outputs[contract.final_h(layer)]) for layer in layers],
        )

    def describe(self) -> str:
        config = self.info.config
        return (
            f"{self.info.name} v{self.info.version}: {config.input_size} inputs, layers "
            f"{list(config.hidden_sizes)}, head {config.head}, quantization {self.info.quantization}, "
            f"fingerprint {self.info.fingerprint}, {self.providers[0]} on {self.device}"
        )


def _session(path: Path, options: ort.SessionOptions, providers: Providers) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from None


def _device_of(session: ort.InferenceSession) -> str:
    """cpu, or cuda:N: the GPU onnxruntime actually placed the session on, from its own options."""
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return "cpu"
    return f"cuda:{session.get_provider_options()['CUDAExecutionProvider'].get('device_id', '0')}"


def _accepts(path: Path, text: str) -> tuple[str, ...]:
    try:
        names = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested too deep for json
        names = None
    if not isinstance(names, list) or not all(
        isinstance(name, str) and layout.is_model_name(name) for name in names
    ):
        raise ModelLoadError(
            f"{path}: bad {contract.META_ACCEPTS_STATE_FROM} metadata (a JSON list of model names)"
        )
    return tuple(names)


def _say_fallback(asked: Providers, used: list[str]) -> None:
    """onnxruntime-gpu lists CUDA even where no GPU or driver is, then falls back to the CPU when a
    session starts: said once, plainly, rather than left to its own error lines."""
    global _warned_cpu
    wanted = asked[0][0] if isinstance(asked[0], tuple) else asked[0]
    if wanted == "CUDAExecutionProvider" and used[0] != wanted and not _warned_cpu:
        _warned_cpu = True
        log.warning(
            "device cuda asked for, but onnxruntime could not start CUDA here (no GPU or driver?): "
            "serving on the CPU"
        )


def _has_driver() -> bool:
    """The NVIDIA driver's user-space library, which no wheel carries: the host (or the container
    runtime's GPU hook) provides it."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True
