"""The one user-facing error type.

Anything the user can fix (a bad config key, a missing file, malformed data) is raised as
``CTRBenchError`` with a single line that names the file or key and says how to fix it.
The CLI turns it into ``error: <message>`` and exit code 2; ``--debug`` shows the traceback.
The model library, which does not depend on this package, raises its own ``ModelConfigError`` for a
model's settings; ``USER_ERRORS`` names both, and the CLI handles them alike.
"""

from model_zoo.errors import ModelConfigError


class CTRBenchError(Exception):
    """A problem with the user's input, carrying a one-line message."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


USER_ERRORS = (CTRBenchError, ModelConfigError)
