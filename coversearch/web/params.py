"""Limits on what a request may ask for, and the error a request outside them gets."""

from __future__ import annotations

from coversearch.errors import CoverSearchError

MAX_K = 50
DEFAULT_K = 10


class BadRequest(CoverSearchError):
    """A request the page or API refuses, with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
