"""coversearch: a feature store and similarity-search engine for album cover art."""

__version__ = "0.1.0"
