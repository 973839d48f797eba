"""A fixed train / validation / test split of albums, stratified by genre, stored in the store.

Albums (distinct bytes) are what is split, so every copy of the same bytes is on one side; and
near-duplicate groups (resized, cropped, re-compressed copies of one cover: see
``coversearch.dedupe``, the same default rule as `coversearch dedupe`) are split as
one unit, so no test album has a near-copy in train.  Each unit's stratum is its full genre set
("Electronic+Pop" is a stratum of its own), so albums with several genres spread over the sides
like the rest.  Within a stratum, units are ordered by a hash of (seed, sha256) (a group's
smallest sha256) and cut by the fractions: the same seed gives the same split whatever the order
of ingestion.

Albums ingested after a split was made are placed by a fixed rule, so a split never needs
remaking to cover them: an album goes to train when u < train fraction, to validation when
u < train + validation fractions, else to test, where u = the first 64 bits of
sha256("<seed>:<album sha256>") read as a fraction of 2**64.  The rule depends only on the split's
seed and fractions and the album's bytes, so every reader places a new album on the same side, in
any order, without writing to the store.  Removing an album removes its side; relabelling keeps it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from coversearch.errors import CoverSearchError
from coversearch.dedupe.stored import current_groups
from coversearch.store import Store
from coversearch.store.rows import utcnow

SIDES = ("train", "val", "test")
DEFAULT_SPLIT = "default"
DEFAULT_SEED = 20261125
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)


@dataclass(frozen=True)
class Split:
    name: str
    seed: int
    fractions: tuple[float, float, float]
    sides: dict[int, str]  # album id -> "train" | "val" | "test"
    added_by_rule: int = 0  # albums ingested after the split was made, placed by ``side_by_rule``

    def album_ids(self, side: str) -> np.ndarray:
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}")
        return np.array(sorted(a for a, s in self.sides.items() if s == side), dtype=np.int64)

    def counts(self) -> dict[str, int]:
        return {side: sum(1 for s in self.sides.values() if s == side) for side in SIDES}


def _rank_key(seed: int, sha: str) -> str:
    return hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest()


def side_by_rule(seed: int, sha: str, fractions) -> str:
    """The side of an album ingested after the split was made (see the module docstring)."""
    u = int(_rank_key(seed, sha)[:16], 16) / 2**64
    return "train" if u < fractions[0] else "val" if u < fractions[0] + fractions[1] else "test"


def assign_sides(
    albums: list[tuple[int, str, tuple[str, ...]]],
    seed: int,
    fractions=DEFAULT_FRACTIONS,
    groups: Sequence[Sequence[int]] = (),
) -> dict[int, str]:
    """albums: (id, sha256, genres); groups: album ids that must share a side.  Returns album id -> side."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise CoverSearchError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    by_id = {album_id: (sha, tuple(genres)) for album_id, sha, genres in albums}
    units: list[list[int]] = []
    grouped: set[int] = set()
    for group in groups:
        members = [int(a) for a in group if int(a) in by_id and int(a) not in grouped]
        if members:
            units.append(members)
            grouped.update(members)
    units.extend([album_id] for album_id, _, _ in albums if album_id not in grouped)
    strata: dict[tuple[str, ...], list[tuple[str, list[int]]]] = {}
    for members in units:
        genres = tuple(sorted({g for m in members for g in by_id[m][1]}))
        strata.setdefault(genres, []).append((min(by_id[m][0] for m in members), members))
    sides: dict[int, str] = {}
    for stratum in strata.values():
        stratum.sort(key=lambda unit: _rank_key(seed, unit[0]))
        n = sum(len(members) for _, members in stratum)
        n_train = round(n * fractions[0])
        n_val = round(n * (fractions[0] + fractions[1])) - n_train
        placed = 0  # albums placed before this unit: a unit goes where its first album would
        for _, members in stratum:
            side = "train" if placed < n_train else "val" if placed < n_train + n_val else "test"
            for album_id in members:
                sides[album_id] = side
            placed += len(members)
    return sides


def make_split(
    store: Store,
    name: str = DEFAULT_SPLIT,
    seed: int = DEFAULT_SEED,
    fractions=DEFAULT_FRACTIONS,
    replace: bool = False,
    near_duplicates: bool = True,
) -> Split:
    """Assign every album with a genre to a side and store it under ``name``.

    With ``near_duplicates`` each near-duplicate group (by the store's phash and vgg16 vectors,
    those it has) stays on one side.
    """
    if store.split_exists(name) and not replace:
        raise CoverSearchError(f"split {name!r} already exists; models trained on it depend on it (use --replace to redo it)")
    groups = current_groups(store) if near_duplicates else []
    sides = assign_sides(store.labelled_albums(), seed, fractions, groups)
    store.save_split(name, seed, fractions, sides, utcnow())
    return Split(name, seed, tuple(fractions), sides)


def load_split(store: Store, name: str = DEFAULT_SPLIT) -> Split | None:
    stored = store.read_split(name)
    if stored is None:
        return None
    seed, fractions, sides, newer = stored
    for album_id, sha in newer:  # albums labelled since the split was made go by its rule
        sides[album_id] = side_by_rule(seed, sha, fractions)
    return Split(name, seed, fractions, sides, added_by_rule=len(newer))


def get_or_make_split(store: Store, name: str = DEFAULT_SPLIT) -> Split:
    """The stored split; made with the default seed and fractions the first time (needs a writable store)."""
    split = load_split(store, name)
    if split is not None:
        return split
    if store.read_only:
        raise CoverSearchError(f"the store has no split {name!r} yet; run `coversearch train` or `coversearch split` first")
    return make_split(store, name)


def groups_across_sides(split: Split, groups: Sequence[Sequence[int]]) -> dict[str, int]:
    """How a split cuts near-duplicate groups: groups on more than one side, and test (val) albums
    with a near-duplicate in train."""
    crossing = test_leaks = val_leaks = 0
    for group in groups:
        sides = [split.sides.get(int(a)) for a in group]
        if len({s for s in sides if s is not None}) > 1:
            crossing += 1
        if "train" in sides:
            test_leaks += sides.count("test")
            val_leaks += sides.count("val")
    return {"groups": len(groups), "groups_split": crossing, "test_albums_with_train_duplicate": test_leaks,
            "val_albums_with_train_duplicate": val_leaks}
