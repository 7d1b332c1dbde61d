"""The import stage's exceptions."""

from lstmserve.errors import LstmServeError


class ImportRefused(LstmServeError):
    """The source model cannot be served as an lstmserve stack; the message names the layer and why."""


class ImportCheckFailed(LstmServeError):
    """The imported model does not compute what the source framework computes; nothing is written."""
