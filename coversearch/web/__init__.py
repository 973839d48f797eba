"""`coversearch serve`: a small local web page (Flask) for classifying a cover and finding similar ones."""

from coversearch.web.app import MAX_UPLOAD_BYTES, Engine, QueryError, create_app

__all__ = ["MAX_UPLOAD_BYTES", "Engine", "QueryError", "create_app"]
