"""The model library's one error type.

A model raises ``ModelConfigError`` when its settings cannot build it (an unknown model name, a
hyperparameter out of range, a feature map it cannot read), with a single line that names the key
and says how to fix it. It is a ``ValueError``, so code that uses the library alone can catch it as
one; a command-line front end can turn it into its own one-line error.
"""


class ModelConfigError(ValueError):
    """Settings of a model that cannot build it, carrying a one-line message."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.key = key  # the setting at fault, when one is (a config front end names its origin)

    def __str__(self):
        return self.message
