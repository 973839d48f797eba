"""Errors a user can act on.

Anything raised as a ``CoverSearchError`` is printed by the CLI as one line and turns into a
non-zero exit code; anything else is a bug and keeps its traceback.
"""


class CoverSearchError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class StoreError(CoverSearchError):
    """The store is missing, locked by another process, or not a coversearch store."""


class FeatureError(CoverSearchError):
    """A feature extractor cannot run (unknown name, missing weights, model mismatch)."""


class ImageError(CoverSearchError):
    """An image could not be used; ``reason`` is a short stable code stored in the errors table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # pickled with a mapped batch between Ray processes
        return type(self), (self.reason, self.detail)
