"""The placement index's merged search (saved base + added albums - removed albums) answers as one
exact index over the union would: the same ids, distances and order of ties."""

import numpy as np
import pytest

from coversearch import metrics
from coversearch.dedupe.placement_index import PlacementIndex
from coversearch.index.exact import ExactIndex
from coversearch.index.faiss_binary import BinaryIndex


def _vectors(rng, n, metric, dim):
    if metric == metrics.HAMMING:
        return rng.integers(0, 2, (n, dim)).astype(np.float32)
    return rng.standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("metric,dim", [(metrics.COSINE, 24), (metrics.EUCLIDEAN, 16), (metrics.HAMMING, 16)])
def test_merged_search_equals_an_exact_search_over_the_union_less_the_removed(metric, dim, tmp_path):
    rng = np.random.default_rng(7)
    cls = BinaryIndex if metric == metrics.HAMMING else ExactIndex
    base_vectors, base_ids = _vectors(rng, 600, metric, dim), rng.permutation(np.arange(1000, 1600))
    added_vectors, added_ids = _vectors(rng, 40, metric, dim), np.arange(5000, 5040)
    added_vectors[:5] = base_vectors[10:15]  # exact ties between the base and the added albums
    added_vectors[5:8] = added_vectors[20:23]  # and among the added ones
    cls(metric, dim).fit(base_vectors, base_ids).save(tmp_path)
    base = cls.load(tmp_path, metric=metric, dim=dim, build_params={}, query_params={}, mapped=True)
    assert base.mapped == (cls is ExactIndex)
    merged = PlacementIndex(base)
    merged.add(added_vectors[:25], added_ids[:25])
    merged.add(added_vectors[25:], added_ids[25:])
    base_kept, added_kept, back = base_ids, added_ids, np.zeros(0, np.int64)
    if merged.supports_remove:
        # Base albums (among them the twins of added ones) and added albums removed; one comes back.
        gone = np.concatenate([base_ids[[3, 10, 11, 50, 400]], added_ids[[1, 30]]])
        assert merged.remove(gone) == len(gone)
        merged.add(base_vectors[[50]] + 0.5, base_ids[[50]])
        base_kept, added_kept, back = base_ids[~np.isin(base_ids, gone)], added_ids[~np.isin(added_ids, gone)], base_ids[[50]]
    union_ids = np.concatenate([base_kept, added_kept, back])
    assert np.array_equal(merged.ids, union_ids) and len(merged) == len(union_ids)
    held = dict(zip(np.concatenate([base_ids, added_ids]).tolist(), np.concatenate([base_vectors, added_vectors])))
    if merged.supports_remove:
        held[int(base_ids[50])] = base_vectors[50] + 0.5
    union = cls(metric, dim).fit(np.stack([held[int(a)] for a in union_ids]), union_ids)

    queries = np.concatenate([_vectors(rng, 9, metric, dim), base_vectors[[10, 12, 3]], added_vectors[[20, 0]]])
    for k in (1, 5, 16, 60):
        got, want = merged.batch_search(queries, k), union.batch_search(queries, k)
        assert np.array_equal(got[0], want[0]), k
        assert np.allclose(got[1], want[1], rtol=0, atol=1e-6), k
        one, ref = merged.search(queries[2], k), union.search(queries[2], k)
        assert np.array_equal(one.ids, ref.ids) and np.array_equal(one.distances, ref.distances)
    allowed = union_ids[::3]
    got, want = merged.batch_search(queries, 8, allowed), union.batch_search(queries, 8, allowed)
    assert np.array_equal(got[0], want[0]) and np.allclose(got[1], want[1], rtol=0, atol=1e-6)
    if merged.supports_remove:
        assert not merged.holds_vectors(base_vectors[[3]], base_ids[[3]])
        assert merged.holds_vectors(np.stack([held[int(a)] for a in union_ids[-6:]]), union_ids[-6:])

    # Written whole, the changes folded in, it reads back as the union itself, rows in the same order.
    saved = {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.is_file()}
    (tmp_path / "whole").mkdir()
    merged.save(tmp_path / "whole")
    assert saved == {f.name: f.read_bytes() for f in tmp_path.iterdir() if f.is_file()}, "the mapped base file is never written"
    again = cls.load(tmp_path / "whole", metric=metric, dim=dim, build_params={}, query_params={})
    assert np.array_equal(again.ids, union_ids)
    assert np.array_equal(again.batch_search(queries, 16)[0], union.batch_search(queries, 16)[0])
