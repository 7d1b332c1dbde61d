"""The ONNX contract's tensor names: the same in model/, export/, server/, proto/, client/ and docs."""

INPUT = "input"  # (batch, time, input_size) float32
SEQUENCE_LENGTHS = "sequence_lengths"  # (batch,) int32, 0 <= length <= time
OUTPUT = "output"  # (batch, time, hidden_sizes[-1]) float32, zero past each row's length
LOGITS = "logits"  # (batch, num_outputs) or (batch, time, num_outputs); only with a head


def initial_c(layer: int) -> str:
    return f"initial_c_{layer}"


def initial_h(layer: int) -> str:
    return f"initial_h_{layer}"


def final_c(layer: int) -> str:
    return f"final_c_{layer}"


def final_h(layer: int) -> str:
    return f"final_h_{layer}"


def input_names(num_layers: int) -> list[str]:
    """Graph inputs in order: input, sequence_lengths, then (initial_c_l, initial_h_l) per layer."""
    names = [INPUT, SEQUENCE_LENGTHS]
    for layer in range(num_layers):
        names += [initial_c(layer), initial_h(layer)]
    return names


def output_names(num_layers: int, has_logits: bool) -> list[str]:
    """Graph outputs in order: output, then (final_c_l, final_h_l) per layer, then logits."""
    names = [OUTPUT]
    for layer in range(num_layers):
        names += [final_c(layer), final_h(layer)]
    return names + ([LOGITS] if has_logits else [])


# metadata_props keys: the server needs nothing but the .onnx file.
META_CONFIG = "lstmserve.config"  # LSTMConfig as JSON
META_HEAD = "lstmserve.head"
META_LABELS = "lstmserve.labels"  # JSON list of class names
META_FINGERPRINT = "lstmserve.fingerprint"  # states are only valid for the model that made them
META_VERSION = "lstmserve.version"  # the lstmserve release that exported it
META_QUANTIZATION = "lstmserve.quantization"  # one of QUANTIZATIONS
# JSON list of model names whose states this model also takes as its initial state (an encoder's, say):
# declared at export (--accepts-state-from), honoured by the server where the state shapes match.
META_ACCEPTS_STATE_FROM = "lstmserve.accepts_state_from"
QUANTIZATIONS = ("none", "int8")
