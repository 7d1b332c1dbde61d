from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FLOAT32: _ClassVar[DataType]
    INT32: _ClassVar[DataType]
    INT64: _ClassVar[DataType]
DATA_TYPE_UNSPECIFIED: DataType
FLOAT32: DataType
INT32: DataType
INT64: DataType

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class LayerState(_message.Message):
    __slots__ = ("c", "h")
    C_FIELD_NUMBER: _ClassVar[int]
    H_FIELD_NUMBER: _ClassVar[int]
    c: Tensor
    h: Tensor
    def __init__(self, c: _Optional[_Union[Tensor, _Mapping]] = ..., h: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class State(_message.Message):
    __slots__ = ("fingerprint", "layers", "sealed")
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    layers: _containers.RepeatedCompositeFieldContainer[LayerState]
    sealed: bytes
    def __init__(self, fingerprint: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[LayerState, _Mapping]]] = ..., sealed: _Optional[bytes] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model", "version", "input", "sequence_lengths", "state", "outputs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    input: Tensor
    sequence_lengths: Tensor
    state: State
    outputs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., input: _Optional[_Union[Tensor, _Mapping]] = ..., sequence_lengths: _Optional[_Union[Tensor, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., outputs: _Optional[_Iterable[str]] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("model", "version", "output", "logits", "state")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    output: Tensor
    logits: Tensor
    state: State
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., output: _Optional[_Union[Tensor, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "versions", "input_size", "hidden_sizes", "head", "num_outputs", "labels", "fingerprint", "quantization", "lstmserve_version", "accepts_state_from", "provider", "device", "limits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZES_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    NUM_OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    LSTMSERVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_STATE_FROM_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    input_size: int
    hidden_sizes: _containers.RepeatedScalarFieldContainer[int]
    head: str
    num_outputs: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    fingerprint: str
    quantization: str
    lstmserve_version: str
    accepts_state_from: _containers.RepeatedScalarFieldContainer[str]
    provider: str
    device: str
    limits: Limits
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., input_size: _Optional[int] = ..., hidden_sizes: _Optional[_Iterable[int]] = ..., head: _Optional[str] = ..., num_outputs: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., fingerprint: _Optional[str] = ..., quantization: _Optional[str] = ..., lstmserve_version: _Optional[str] = ..., accepts_state_from: _Optional[_Iterable[str]] = ..., provider: _Optional[str] = ..., device: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_request_rows", "max_request_steps", "max_request_row_steps", "max_message_bytes", "max_generate_steps")
    MAX_REQUEST_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_ROW_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_GENERATE_STEPS_FIELD_NUMBER: _ClassVar[int]
    max_request_rows: int
    max_request_steps: int
    max_request_row_steps: int
    max_message_bytes: int
    max_generate_steps: int
    def __init__(self, max_request_rows: _Optional[int] = ..., max_request_steps: _Optional[int] = ..., max_request_row_steps: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_generate_steps: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompt", "max_steps", "feedback", "temperature", "top_k", "seed", "stop_classes")
    class Feedback(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHOICE: _ClassVar[GenerateRequest.Feedback]
        VALUE: _ClassVar[GenerateRequest.Feedback]
    CHOICE: GenerateRequest.Feedback
    VALUE: GenerateRequest.Feedback
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_CLASSES_FIELD_NUMBER: _ClassVar[int]
    prompt: InferRequest
    max_steps: int
    feedback: GenerateRequest.Feedback
    temperature: float
    top_k: int
    seed: int
    stop_classes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, prompt: _Optional[_Union[InferRequest, _Mapping]] = ..., max_steps: _Optional[int] = ..., feedback: _Optional[_Union[GenerateRequest.Feedback, str]] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., stop_classes: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "version", "step", "logits", "choices", "state", "seed")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    step: int
    logits: Tensor
    choices: Tensor
    state: State
    seed: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., step: _Optional[int] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., choices: _Optional[_Union[Tensor, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...
