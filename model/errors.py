"""The model stage's exceptions, each a LstmServeError whose message names the problem."""

from lstmserve.errors import LstmServeError


class ConfigError(LstmServeError, ValueError):
    """An LSTMConfig that cannot describe a working stack."""


class DataError(LstmServeError, ValueError):
    """A data set that is missing, malformed or does not fit the model."""


class CheckpointError(LstmServeError, ValueError):
    """A checkpoint that cannot be read or does not match its own config."""
