"""The clustered self-join (index/selfjoin.py) over pHash-like bit vectors and in place: what a whole
placement of a large store uses for both default features."""

from __future__ import annotations

import numpy as np

from coversearch import metrics
from coversearch.dedupe.candidates import self_join_search
from coversearch.index.exact import ExactIndex
from coversearch.index.faiss_binary import BinaryIndex
from coversearch.index.selfjoin import clustered_self_knn


def test_hamming_self_join_gives_exact_bit_distances_and_finds_near_copies():
    rng = np.random.default_rng(3)
    codes = (rng.random((4000, 64)) < 0.5).astype(np.float32)
    copies = codes[:200].copy()
    for row in copies:  # near copies: 0-4 bits flipped
        flip = rng.choice(64, size=int(rng.integers(0, 5)), replace=False)
        row[flip] = 1 - row[flip]
    x = np.concatenate([codes, copies])
    positions, distances = clustered_self_knn(x, metrics.HAMMING, 4, nprobe=8)
    found = positions[:, 1:] >= 0
    exact = metrics.pair_distances(np.repeat(x, 3, axis=0)[found.ravel()], x[positions[:, 1:][found]], metrics.HAMMING)
    assert np.array_equal(exact, distances[:, 1:][found]), "distances are whole bits, exactly"
    # Every planted copy is among its original's neighbours (the copies sit in their original's clusters).
    assert all(4000 + i in positions[i] for i in range(200))
    _, truth = BinaryIndex(metrics.HAMMING, 64).fit(x, np.arange(len(x))).batch_search(x, 2)
    close = truth[:, 1] <= 6  # near copies; unrelated random codes have no cluster structure to find
    assert close.sum() >= 400 and np.array_equal(truth[close, 1], distances[close, 1])


def test_in_place_self_join_search_matches_exact_search_for_wider_asks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64) * 7
    search = self_join_search(x.copy(), ids, metrics.COSINE, in_place=True)
    wide_ids, wide_d = search(np.arange(40), 40)  # more than the self-join kept: answered exactly
    truth_ids, truth_d = ExactIndex(metrics.COSINE, 32).fit(x, ids).batch_search(x[:40], 40)
    assert np.array_equal(wide_ids, truth_ids)
    assert np.allclose(wide_d, truth_d, atol=1e-5)
