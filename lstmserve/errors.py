"""The root of lstmserve's exceptions: the CLI prints these as one line, never a traceback."""


class LstmServeError(Exception):
    """A problem a user can act on; the message names it."""
