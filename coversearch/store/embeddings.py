"""Feature sets and their vectors: registering a set, reading vectors in bulk or in batches, and
exact search by SQL (the ``duckdb`` index kind).  ``Store`` inherits these."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Sequence

import duckdb
import numpy as np

from coversearch import metrics
from coversearch.errors import FeatureError
from coversearch.store.rows import RECORD_KIND, TEXT_KIND, VECTOR_KIND, FeatureSet, kind_of, utcnow

class EmbeddingReads:
    con: duckdb.DuckDBPyConnection

    def feature_sets(self, *, kind: str | None = VECTOR_KIND) -> list[FeatureSet]:
        """The feature sets of one kind (vectors unless told: ``RECORD_KIND``, ``TEXT_KIND``), or of
        every kind with ``kind=None``."""
        rows = self.con.execute(
            "SELECT id, name, version, dim, params, model_fingerprint, kind FROM feature_sets "
            "WHERE $kind IS NULL OR kind = $kind ORDER BY name, version", {"kind": kind}
        ).fetchall()
        return [FeatureSet(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows]

    def feature_set(self, name: str, version: int | None = None) -> FeatureSet:
        """The named set (its latest version unless one is given); a clear error if absent."""
        held = self.feature_sets(kind=None)
        candidates = [fs for fs in held if fs.name == name and (version is None or fs.version == version)]
        if not candidates:
            known = ", ".join(sorted({fs.name for fs in held})) or "none"
            raise FeatureError(f"the store has no {name!r} embeddings (it has: {known}); run `coversearch ingest --features {name}`")
        return max(candidates, key=lambda fs: fs.version)

    def ensure_feature_set(self, extractor) -> FeatureSet:
        """Register the extractor's feature set (and its vector table), or check it matches."""
        params = extractor.params()
        fingerprint = extractor.model_fingerprint()
        kind = kind_of(extractor)
        for fs in self.feature_sets(kind=None):
            if fs.name == extractor.name and fs.version == extractor.version:
                if fs.model_fingerprint != fingerprint or fs.params != params or fs.dim != extractor.dim or fs.kind != kind:
                    raise FeatureError(
                        f"the store's {fs.label} embeddings were made with model {fs.model_fingerprint} and "
                        f"params {fs.params}; this extractor has {fingerprint} and {params}: use the same "
                        "weights, or another store"
                    )
                return fs
        with self.transaction() as con:
            (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM feature_sets").fetchone()
            con.execute(
                "INSERT INTO feature_sets (id, name, version, dim, params, model_fingerprint, created_at, kind) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [next_id, extractor.name, extractor.version, extractor.dim, json.dumps(params), fingerprint, utcnow(), kind],
            )
            fs = FeatureSet(next_id, extractor.name, extractor.version, extractor.dim, params, fingerprint, kind)
            if kind == TEXT_KIND:
                # lines: the recognised lines as JSON; plain / compact: their searchable forms (features/text.py).
                con.execute(f"CREATE TABLE {fs.table} (album_id BIGINT PRIMARY KEY, lines VARCHAR NOT NULL, "
                            "plain VARCHAR NOT NULL, compact VARCHAR NOT NULL)")
            else:
                column = "data BLOB" if kind == RECORD_KIND else f"vector FLOAT[{fs.dim}]"
                con.execute(f"CREATE TABLE {fs.table} (album_id BIGINT PRIMARY KEY, {column} NOT NULL)")
        return fs

    def embedding_count(self, fs: FeatureSet) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {fs.table}").fetchone()[0])

    def embedded_album_ids(self, fs: FeatureSet) -> set[int]:
        return {r[0] for r in self.con.execute(f"SELECT album_id FROM {fs.table}").fetchall()}

    def load_embeddings(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(album ids int64 (n,), vectors float32 (n, dim)), ordered by album id."""
        sql = f"SELECT album_id, vector FROM {fs.vector_table}"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        cols = self.con.execute(sql + " ORDER BY album_id", params).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, fs.dim), dtype=np.float32)
        return ids, np.stack(cols["vector"]).astype(np.float32, copy=False)

    def load_records(self, fs: FeatureSet, album_ids: Sequence[int]) -> dict[int, bytes]:
        """album id -> stored record of a record set (e.g. keypoints), for those of ``album_ids`` it holds."""
        if fs.kind != RECORD_KIND:
            raise FeatureError(f"{fs.label} is a feature set of kind {fs.kind}, not of records")
        rows = self.con.execute(
            f"SELECT album_id, data FROM {fs.table} WHERE album_id IN (SELECT unnest($1))", [np.asarray(album_ids, dtype=np.int64)]
        ).fetchall()
        return {int(a): bytes(d) for a, d in rows}

    def embedding_album_ids(self, fs: FeatureSet) -> np.ndarray:
        """The album ids with a vector in the set, ascending (int64)."""
        cols = self.con.execute(f"SELECT album_id FROM {fs.table} ORDER BY album_id").fetchnumpy()
        return np.asarray(cols["album_id"], dtype=np.int64)

    def iter_embeddings(
        self, fs: FeatureSet, first_id: int, last_id: int, chunk_rows: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(album ids, vectors) chunks of at most ``chunk_rows``, for album ids in [first_id, last_id]
        ascending: one shard of a sharded index build, read without holding it all in memory."""
        after = int(first_id) - 1
        while True:
            cols = self.con.execute(
                f"SELECT album_id, vector FROM {fs.vector_table} WHERE album_id > $1 AND album_id <= $2 "
                "ORDER BY album_id LIMIT $3",
                [after, int(last_id), int(chunk_rows)],
            ).fetchnumpy()
            ids = np.asarray(cols["album_id"], dtype=np.int64)
            if len(ids) == 0:
                return
            yield ids, np.stack(cols["vector"]).astype(np.float32, copy=False)
            after = int(ids[-1])

    def sample_embeddings(self, fs: FeatureSet, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded reservoir sample of ``n`` (album ids, vectors) (all of them when the set is smaller),
        ordered by album id: what an IVF index trains its centroids and codebooks on."""
        cols = self.con.execute(
            f"SELECT album_id, vector FROM (SELECT album_id, vector FROM {fs.vector_table} "
            f"USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE ({int(seed)})) ORDER BY album_id"
        ).fetchnumpy()
        ids = np.asarray(cols["album_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, fs.dim), dtype=np.float32)
        return ids, np.stack(cols["vector"]).astype(np.float32, copy=False)

    def vectors_for(self, fs: FeatureSet, album_ids: Sequence[int]) -> np.ndarray:
        """The vectors of ``album_ids`` (float32, in the order given); every id must have one."""
        wanted = np.asarray(album_ids, dtype=np.int64)
        ids, vectors = self.load_embeddings(fs, np.unique(wanted))
        at = np.searchsorted(ids, wanted)
        if len(ids) == 0 or (at >= len(ids)).any() or (ids[np.clip(at, 0, len(ids) - 1)] != wanted).any():
            raise FeatureError(f"the store's {fs.label} vectors lack some of the albums asked for")
        return vectors[at]

    def embedding_fingerprint(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> str:
        """Changes whenever the set's vectors change: albums added or removed, or a new model.

        With ``album_ids``, the same fingerprint over those albums only (an index built from them
        can then tell whether its vectors are still exactly the store's).
        """
        content = "plain" if fs.kind == TEXT_KIND else "vector"  # of a text set, what the genre models read
        table = fs.table if fs.kind == TEXT_KIND else fs.vector_table
        sql = (
            f"SELECT count(*), coalesce(bit_xor(hash(album_id)), 0), coalesce(bit_xor(hash(album_id, {content})), 0) "
            f"FROM {table}"
        )
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        count, id_hash, vec_hash = self.con.execute(sql, params).fetchone()
        text = f"{fs.name}:{fs.version}:{fs.model_fingerprint}:{count}:{id_hash}:{vec_hash}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def nearest(self, fs: FeatureSet, metric: str, queries: np.ndarray, k: int,
                allowed_ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest albums of each query by one SQL scan of the set's vectors: (ids (nq, k)
        padded with -1, distances (nq, k) padded with inf), ties broken by album id."""
        sql = (
            f"SELECT album_id, {metrics.definition(metric).sql.format(q=f'$query::FLOAT[{fs.dim}]')} AS distance "
            f"FROM {fs.vector_table}"
        )
        params: dict = {}
        if allowed_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($allowed))"
            params["allowed"] = np.asarray(allowed_ids, dtype=np.int64)
        sql += f" ORDER BY distance, album_id LIMIT {int(k)}"
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        for i, vector in enumerate(queries):
            params["query"] = vector.tolist()
            found = self.con.execute(sql, params).fetchnumpy()
            n = len(found["album_id"])
            ids[i, :n] = found["album_id"]
            distances[i, :n] = found["distance"]
        return ids, distances

    def text_rows(self, fs: FeatureSet, album_ids: Sequence[int] | None = None) -> list[tuple[int, str, str, str]]:
        """(album id, lines JSON, plain, compact) of a text feature set, by album id."""
        if fs.kind != TEXT_KIND:
            raise FeatureError(f"{fs.label} holds vectors, not text")
        sql = f"SELECT album_id, lines, plain, compact FROM {fs.table}"
        params: list[Any] = []
        if album_ids is not None:
            sql += " WHERE album_id IN (SELECT unnest($1))"
            params = [np.asarray(album_ids, dtype=np.int64)]
        return [(int(a), l, p, c) for a, l, p, c in self.con.execute(sql + " ORDER BY album_id", params).fetchall()]
