"""Ingestion: reader (what files, with which genres) -> mapper (bytes, hash, pixels, features)
-> writer (one transaction per batch), planned and run by ``pipeline.ingest`` on a distributor
(``local`` in this process, ``ray`` on a cluster)."""
