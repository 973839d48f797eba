"""Queries over the store and its indexes (the CLI only parses and prints)."""

from coversearch.query.similar import SimilarHit, SimilarResult, SimilarSearcher, find_similar

__all__ = ["SimilarHit", "SimilarResult", "SimilarSearcher", "find_similar"]
