"""How far one step of an int8 stack may be from fp32, derived from its quantization scales.

onnxruntime's DynamicQuantizeLSTM computes each gate's pre-activation as an integer product: the
activations of the call (the input chunk, then each step's h) quantized to uint8 with one scale
s_a = range / 255 (the range includes 0), the weights to int8 with one scale s_w per gate row. Both
roundings are at most half a step, so for z_j = sum_k a_k w_kj:

    |z_int8 - z_fp32| <= sum_k |w^_kj| (|da_k| + s_a / 2) + s_w_j / 2 * sum_k |a_k|

(w^ the dequantized weights, da what the int8 path's inputs already differ by). The gates are
Lipschitz (sigmoid 1/4, tanh 1), and c' = f c + i g, h' = o tanh(c') bound the rest with products
of the fp32 values and these differences. This is a worst case (every rounding the same way), so it
is loose, but it holds on any CPU whose integer kernels add exactly: one that saturates (u8s8 on
AVX2 without 7-bit weights) can break it, and so can any quantization other than the scales say.

Over many steps the same worst case compounds through the recurrent weights far past anything
useful, so only one step is bounded here; tests/export check whole sequences by what users rely
on (accuracy and agreement of predictions), measured on several CPUs and trainings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from lstmserve import contract

from .sessions import run, session

_SIGMOID_SLOPE = 0.25  # the largest slope of the logistic function (at 0); tanh's is 1
# float32 round-off of the outputs themselves, scaled by 1 + |value| (as export.verify.scaled_gap)
_ROUND_OFF = 1e-5
# onnxruntime's u8s8 kernels without VNNI add pairs of products in int16: 2 x 255 x 64 = 32640 fits,
# 2 x 255 x 65 does not. quantize_int8's 7-bit weights (reduce_range) stay within it.
INT8_WEIGHT_LIMIT = 64


@dataclass(frozen=True)
class _Weights:
    """One matrix as fp32 and as the int8 model holds it: (rows, k) with rows the outputs."""

    fp32: np.ndarray  # (rows, k)
    int8: np.ndarray  # (rows, k) dequantized: q * scale
    scale: np.ndarray  # (rows,)

    def product_gap(self, a: np.ndarray, gap: np.ndarray) -> np.ndarray:
        """Bound on |a' q(w) - a w| per output, for inputs a' within `gap` of a (batch, k), with a'
        quantized as one tensor (the int8 path's range: a widened by its gap)."""
        wide_max = max(float((a + gap).max()), 0.0)
        wide_min = min(float((a - gap).min()), 0.0)
        half_step = (wide_max - wide_min) / 255 / 2
        return (gap + half_step) @ np.abs(self.int8).T + np.abs(a).sum(1, keepdims=True) * self.scale / 2


class Int8StepBound:
    """The bound for one time step of `int8` (quantize_int8 of `fp32`) from the same state."""

    def __init__(self, fp32: onnx.ModelProto, int8: onnx.ModelProto):
        weights32, weights8 = _initializers(fp32), _initializers(int8)
        lstm32 = [node for node in fp32.graph.node if node.op_type == "LSTM"]
        lstm8 = [node for node in int8.graph.node if node.op_type == "DynamicQuantizeLSTM"]
        if len(lstm32) != len(lstm8) or not lstm8:
            raise ValueError("the int8 model must hold one DynamicQuantizeLSTM per LSTM of the fp32 model")
        self.layers = []
        for node32, node8 in zip(lstm32, lstm8):
            w, r = weights32[node32.input[1]][0], weights32[node32.input[2]][0]  # (4H, I), (4H, H)
            bias = weights32[node32.input[3]][0]  # (8H,): Wb then Rb
            self.layers.append(
                (
                    _quantized(w, weights8, node8.input[1], node8.input[8]),
                    _quantized(r, weights8, node8.input[2], node8.input[10]),
                    bias[: len(w)] + bias[len(w) :],
                )
            )
        head = _head(fp32, int8, weights32, weights8)
        self.head = head[0] if head else None  # None: the stack has no head
        self.per_step_head = bool(head and head[1])  # logits at every step, from `output`

    def bound(self, x: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per element of every output, the most |int8 - fp32| may be for one step.

        x: (batch, 1, input_size); state: initial_c_l / initial_h_l, each (batch, hidden)."""
        if x.shape[1] != 1:
            raise ValueError(f"one step at a time: x has {x.shape[1]} steps")
        a, gap = x[:, 0].astype(np.float64), np.zeros(x[:, 0].shape)
        bounds: dict[str, np.ndarray] = {}
        for layer, (w, r, bias) in enumerate(self.layers):
            c0 = state[contract.initial_c(layer)].astype(np.float64)
            h0 = state[contract.initial_h(layer)].astype(np.float64)
            z = a @ w.fp32.T + h0 @ r.fp32.T + bias  # (batch, 4H), gates i, o, f, c
            dz = w.product_gap(a, gap) + r.product_gap(h0, np.zeros(h0.shape))
            i, o, f = (_sigmoid(part) for part in np.split(z[:, : 3 * c0.shape[1]], 3, 1))
            g = np.tanh(z[:, 3 * c0.shape[1] :])
            di, do, df = (_SIGMOID_SLOPE * part for part in np.split(dz[:, : 3 * c0.shape[1]], 3, 1))
            dg = dz[:, 3 * c0.shape[1] :]
            c = f * c0 + i * g
            dc = np.abs(c0) * df + np.abs(i) * dg + np.abs(g) * di + di * dg
            h = o * np.tanh(c)
            dh = np.abs(o) * dc + np.abs(np.tanh(c)) * do + do * dc
            bounds[contract.final_c(layer)], bounds[contract.final_h(layer)] = dc, dh
            a, gap = h, dh
        bounds[contract.OUTPUT] = gap[:, None]
        if self.head is not None:
            bounds[contract.LOGITS] = self.head.product_gap(a, gap)
            if self.per_step_head:  # (batch, time, num_outputs), one step here
                bounds[contract.LOGITS] = bounds[contract.LOGITS][:, None]
        return bounds


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Constant tensors by name, including those passed through Identity: torch's exporter writes
    equal weights once (two layers' all-zero biases, say) and gives the second an Identity of the first."""
    arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    return arrays


def _quantized(fp32: np.ndarray, weights8: dict[str, np.ndarray], name: str, scale_name: str) -> _Weights:
    """DynamicQuantizeLSTM keeps W as (1, k, rows) int8 with a (1, rows) scale (zero point 0)."""
    scale = weights8[scale_name].reshape(-1).astype(np.float64)
    q = weights8[name][0].T.astype(np.float64)  # (rows, k)
    return _Weights(fp32.astype(np.float64), q * scale[:, None], scale)


def _head(
    fp32: onnx.ModelProto, int8: onnx.ModelProto, weights32: dict, weights8: dict
) -> tuple[_Weights, bool] | None:
    """The logits' weights, and whether they apply at every step (per_step) or to the last h."""
    heads32 = [node for node in fp32.graph.node if node.op_type in ("Gemm", "MatMul")]
    heads8 = [node for node in int8.graph.node if node.op_type == "MatMulInteger"]
    if not heads32:
        return None
    if len(heads32) != 1 or len(heads8) != 1:
        raise ValueError("expected one head (Gemm or MatMul) and its one MatMulInteger")
    node32, node8 = heads32[0], heads8[0]
    weight = weights32[node32.input[1]]
    transposed = any(a.name == "transB" and a.i == 1 for a in node32.attribute)
    fp32_rows = weight if transposed else weight.T  # (num_outputs, hidden)
    name = node8.input[1]
    scale = weights8[name.removesuffix("_quantized") + "_scale"].reshape(-1).astype(np.float64)
    q = weights8[name].T.astype(np.float64)  # MatMulInteger keeps (hidden, num_outputs)
    return _Weights(fp32_rows.astype(np.float64), q * scale[:, None], scale), node32.input[
        0
    ] == contract.OUTPUT


def max_int8_weight(int8: onnx.ModelProto) -> int:
    """The largest |q| of the int8 weights the integer kernels multiply (LSTM W and R, the head)."""
    names = set()
    for node in int8.graph.node:
        if node.op_type == "DynamicQuantizeLSTM":
            names |= {node.input[1], node.input[2]}
        elif node.op_type == "MatMulInteger":
            names.add(node.input[1])
    weights = _initializers(int8)
    return max(
        (int(np.abs(weights[name].astype(np.int32)).max()) for name in names if name in weights), default=0
    )


def step_error_ratio(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    rng: np.random.Generator,
    inputs: np.ndarray | None = None,
    calls: int = 4,
    rows: int = 64,
) -> float:
    """The largest |int8 - fp32| / bound over one-step calls from random states, with input rows
    drawn from `inputs` (batch, time, input_size) where given: at most 1 wherever the int8 kernels
    add what the scales say. Random states reach where a trained stack's own rarely go."""
    bound, sess32, sess8 = Int8StepBound(fp32, int8), session(fp32), session(int8)
    worst = 0.0
    for _ in range(calls):
        feed = _random_step(sess32, rng, inputs, rows)
        want, got = run(sess32, feed), run(sess8, feed)
        for name, limit in bound.bound(feed[contract.INPUT], feed).items():
            slack = _ROUND_OFF * (1 + np.abs(want[name]))
            worst = max(
                worst, float((np.abs(got[name] - want[name].astype(np.float64)) / (limit + slack)).max())
            )
    return worst


def _random_step(
    sess, rng: np.random.Generator, inputs: np.ndarray | None, rows: int
) -> dict[str, np.ndarray]:
    """One step for `rows` rows: c ~ N(0, 2), h = tanh(N(0, 1.5)), x from `inputs` or N(0, scale)."""
    features = sess.get_inputs()[0].shape[2]
    if inputs is not None and inputs.size:
        picked = inputs[rng.integers(0, len(inputs), rows), rng.integers(0, inputs.shape[1], rows)]
        x = picked[:, None].astype(np.float32)  # (rows, 1, input_size)
    else:
        x = (rng.standard_normal((rows, 1, features)) * rng.uniform(0.1, 3.0)).astype(np.float32)
    feed = {contract.INPUT: x, contract.SEQUENCE_LENGTHS: np.ones(rows, np.int32)}
    for value in sess.get_inputs()[2:]:
        shape = (rows, value.shape[1])
        if value.name.startswith("initial_c_"):
            feed[value.name] = (2 * rng.standard_normal(shape)).astype(np.float32)
        else:
            feed[value.name] = np.tanh(1.5 * rng.standard_normal(shape)).astype(np.float32)
    return feed
