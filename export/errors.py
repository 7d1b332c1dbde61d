"""The export stage's exceptions."""

from lstmserve.errors import LstmServeError


class ExportError(LstmServeError):
    """The model could not be exported, or the target is not writable as asked."""


class VerificationError(ExportError):
    """The exported graph does not behave as the contract says; the file is not written."""
