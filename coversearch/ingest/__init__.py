"""Ingestion: reader (what files, with which genres) -> mapper (bytes, hash, pixels, features)
-> writer (one transaction per batch).  ``pipeline.ingest`` runs the three."""
