"""What the page answers from: one consistent state of the store, its indexes and models, in memory.

``Snapshot.load`` copies the store into memory (``Store.snapshot``: the file is locked only for the
copy), opens one ``SimilarSearcher`` per feature set (the newest index for it, else exact search)
and every model in the model folder, and checks each model against the copy.  The server swaps
in a new snapshot on reload; queries that started on the old one finish on it.

A model is usable while the feature sets it was trained on are the store's (same feature, version
and model): albums added or removed since leave it answering, listed in ``stale_models`` (its
evaluation no longer describes the store).

The default model is the newest one trained with the default recipe.  A model that cannot be
loaded, or refuses this store, is listed as broken with its reason and never chosen; if the
newest default-recipe model is broken the next newest usable one is the default, and a note
says so.  With no usable default-recipe model, the newest usable model of any recipe is the
default, again with a note.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from coversearch.classify.model import TrainedModel, list_cards, list_model_names
from coversearch.classify.recipes import DEFAULT_RECIPE
from coversearch.errors import CoverSearchError
from coversearch.features.base import FeatureExtractor, extractor_mismatch
from coversearch.features.registry import FEATURE_NAMES
from coversearch.index.manifest import MANIFEST_FILE
from coversearch.query.similar import DEFAULT_FEATURE, SimilarSearcher
from coversearch.query.text import CoverTexts
from coversearch.store.rows import TEXT_KIND
from coversearch.store import Store

# Builds (or reuses) the extractors for these features; they outlive snapshots (VGG16 loads once).
ExtractorSource = Callable[[list[str]], dict[str, FeatureExtractor]]


def files_signature(store_path: Path, model_dir: Path, index_dir: Path | None) -> tuple:
    """Changes when the store file (or its WAL), a model card or an index manifest changes."""

    def stat(path: Path) -> tuple:
        try:
            st = path.stat()
        except OSError:
            return (str(path), None)
        return (str(path), st.st_mtime_ns, st.st_size)

    parts = [stat(store_path), stat(Path(str(store_path) + ".wal"))]
    for folder, marker in ((model_dir, "card.json"), (index_dir, MANIFEST_FILE)):
        if folder is not None and folder.is_dir():
            parts += [stat(entry / marker) for entry in sorted(folder.iterdir()) if not entry.name.startswith(".")]
    return tuple(parts)


@dataclass
class Snapshot:
    store: Store  # an in-memory copy: holds no lock on the file
    searchers: dict[str, SimilarSearcher]
    models: dict[str, TrainedModel]
    broken_models: dict[str, str]  # name -> why it cannot be used
    default_model: str | None
    default_feature: str
    genres: list[str]
    albums: int
    signature: tuple  # files_signature when the load began
    loaded_at: str  # ISO 8601, UTC
    load_seconds: float
    notes: list[str] = field(default_factory=list)
    stale_models: dict[str, str] = field(default_factory=dict)  # usable, but trained before albums were added or removed
    group_of: dict[int, int] | None = None  # near-duplicate groups, read on the first query that collapses them
    dedupe: Any = None  # the default rule's DedupeResult, read on the first evidence asked for
    texts: CoverTexts | None = None  # the words read on the covers (None: the store has no text set)

    @classmethod
    def load(
        cls,
        store_path: str | os.PathLike,
        model_dir: str | os.PathLike,
        index_dir: str | os.PathLike | None,
        extractors_for: ExtractorSource,
        *,
        lock_timeout: float | None = None,
    ) -> "Snapshot":
        started = time.perf_counter()
        store_path, model_dir = Path(store_path), Path(model_dir)
        index_dir = Path(index_dir) if index_dir is not None else None
        signature = files_signature(store_path, model_dir, index_dir)
        store = Store.snapshot(store_path, lock_timeout=lock_timeout)
        try:
            return cls._build(store, model_dir, index_dir, extractors_for, signature, started)
        except BaseException:
            store.close()
            raise

    @classmethod
    def _build(cls, store, model_dir, index_dir, extractors_for, signature, started) -> "Snapshot":
        notes: list[str] = []
        names = [fs.name for fs in store.feature_sets() if fs.name in FEATURE_NAMES]
        if not names:
            raise CoverSearchError(f"the store {store.path} has no feature vectors; run `coversearch ingest` first")
        genres = store.genres()

        # Models first: they say which extractors are needed beyond the searched features.
        models: dict[str, TrainedModel] = {}
        broken: dict[str, str] = {}
        for name in list_model_names(model_dir):
            try:
                model = TrainedModel.load(model_dir, name)
                model.check_store(store)
                models[name] = model
            except CoverSearchError as exc:
                broken[name] = str(exc)
        wanted = ["hsv", *names, *(f for m in models.values() for f in m.card.feature_names)]
        extractors = extractors_for([f for f in dict.fromkeys(wanted) if f in FEATURE_NAMES])

        searchers: dict[str, SimilarSearcher] = {}
        for name in names:
            try:
                searcher = SimilarSearcher.open(store, feature=name, index_dir=index_dir)
            except CoverSearchError as exc:  # e.g. a stale index: search exactly rather than not at all
                notes.append(f"{name}: {exc}; using exact search")
                searcher = SimilarSearcher.exact(store, name)
            searcher.use_extractor(extractors[name])
            searchers[name] = searcher
        for name, model in list(models.items()):
            for ref in model.card.features:
                ex = extractors.get(ref.name)
                if ex is None or extractor_mismatch(ex, ref.name, ref.version, ref.model_fingerprint):
                    broken[name] = f"model {name!r} needs {ref.name} v{ref.version} from {ref.model_fingerprint}"
                    del models[name]
                    break

        stale = {name: why for name, model in models.items() if (why := model.store_changed(store))}
        default_model = cls._choose_default(model_dir, models, broken, notes)
        if default_model in stale:
            notes.append(stale[default_model])
        if not models:
            notes.append(f"no usable model in {model_dir}: genres are not predicted (train one with `coversearch train`)")
        texts = CoverTexts.from_store(store) if store.feature_sets(kind=TEXT_KIND) else None
        return cls(
            texts=texts,
            store=store,
            searchers=searchers,
            models=models,
            broken_models=broken,
            default_model=default_model,
            default_feature=DEFAULT_FEATURE if DEFAULT_FEATURE in searchers else names[0],
            genres=genres,
            albums=store.album_count(),
            signature=signature,
            loaded_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            load_seconds=round(time.perf_counter() - started, 3),
            notes=notes,
            stale_models=stale,
        )

    @staticmethod
    def _choose_default(model_dir: Path, models: dict[str, TrainedModel], broken: dict[str, str], notes: list[str]) -> str | None:
        cards = {c.name: c for c in list_cards(model_dir)}  # every readable card, broken models' too
        newest_first = sorted(cards.values(), key=lambda c: (c.trained_at, c.name), reverse=True)
        of_recipe = [c.name for c in newest_first if c.recipe == DEFAULT_RECIPE]
        usable = [c.name for c in newest_first if c.name in models]
        choice = next((n for n in of_recipe if n in models), usable[0] if usable else None)
        skipped = [n for n in of_recipe[: of_recipe.index(choice) if choice in of_recipe else len(of_recipe)] if n in broken]
        if skipped:
            notes.append(f"the newest {DEFAULT_RECIPE!r}-recipe model {skipped[0]!r} is broken ({broken[skipped[0]]})")
        if choice is not None and choice not in of_recipe:
            notes.append(f"no usable model of the {DEFAULT_RECIPE!r} recipe: the default is the newest other model, {choice!r}")
        return choice

    def health(self) -> dict[str, Any]:
        indexes = {name: {"kind": s.index.kind, "index": s.manifest.name if s.manifest else None, "vectors": len(s.index)}
                   for name, s in self.searchers.items()}
        return {
            "status": "ok",
            "store": str(self.store.path),
            "albums": self.albums,
            "features": sorted(self.searchers),
            "covers_with_text": None if self.texts is None else len(self.texts),
            "indexes": indexes,
            "models": sorted(self.models),
            "default_model": self.default_model,
            "broken_models": self.broken_models,
            "stale_models": self.stale_models,
            "loaded_at": self.loaded_at,
            "load_seconds": self.load_seconds,
        }

    def model_problem(self, name: str | None) -> str | None:
        """Why an answer using model ``name`` (None: the default) has no genres, or None when it has them."""
        name = name or self.default_model
        if name is not None and name in self.models:
            return None
        if name is not None:
            return self.broken_models.get(name) or f"no model named {name!r}"
        why = "; ".join(f"model {n!r}: {problem}" for n, problem in sorted(self.broken_models.items()))
        return "no usable model, so no genres" + (f" ({why})" if why else ": train one with `coversearch train`")

    def close(self) -> None:
        self.store.close()
