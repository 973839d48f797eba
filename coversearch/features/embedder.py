"""Several features from one decode: extractors that share a backbone share its work.

Extractors with a ``backbone`` attribute (the VGG16 heads) are grouped by backbone: each image is
resized once per backbone and each batch goes through each network once, whatever number of
heads read it.  Other extractors (``hsv``) are their own group.  This is the one place that
decides how a set of features is computed, for ingest, queries, classification and the web page.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable, Sequence

import numpy as np

from coversearch.features.base import FeatureExtractor


class _Group:
    """Extractors computed together: one ``prepare`` per image, one batched run per batch."""

    def __init__(self, key: str, extractors: list[FeatureExtractor]):
        self.key = key
        self.extractors = extractors
        self.backbone = getattr(extractors[0], "backbone", None)

    def prepare(self, rgb: np.ndarray) -> Any:
        return (self.backbone or self.extractors[0]).prepare(rgb)

    def run(self, prepared: Sequence[Any], wanted: Sequence[Collection[str]]) -> dict[str, tuple[list[int], np.ndarray]]:
        """name -> (rows of ``prepared`` that want it, their vectors)."""
        if self.backbone is None:
            ex = self.extractors[0]
            return {ex.name: (list(range(len(prepared))), ex.extract(prepared))}
        outputs = self.backbone.forward(prepared)
        out = {}
        for ex in self.extractors:
            rows = [i for i, names in enumerate(wanted) if ex.name in names]
            if rows:
                picked = outputs if len(rows) == len(prepared) else {k: v[rows] for k, v in outputs.items()}
                out[ex.name] = (rows, ex.vectors(picked))
        return out


class Embedder:
    """Computes a set of features: ``prepare`` per image (thread-safe), ``extract`` per batch."""

    def __init__(self, extractors: Iterable[FeatureExtractor]):
        self.extractors: dict[str, FeatureExtractor] = {}
        groups: dict[int, list[FeatureExtractor]] = {}
        for ex in extractors:
            if ex.name in self.extractors:
                continue
            self.extractors[ex.name] = ex
            backbone = getattr(ex, "backbone", None)
            groups.setdefault(id(backbone) if backbone is not None else id(ex), []).append(ex)
        self._groups = [_Group("+".join(e.name for e in members), members) for members in groups.values()]
        self._group_of = {ex.name: g for g in self._groups for ex in g.extractors}

    @property
    def names(self) -> list[str]:
        return list(self.extractors)

    def backbones(self) -> list:
        return [g.backbone for g in self._groups if g.backbone is not None]

    def load(self) -> None:
        """Build every network now: a missing or broken weights file (or OCR package) fails before any work."""
        for backbone in self.backbones():
            backbone.model()
        for group in self._groups:
            if group.backbone is None and hasattr(group.extractors[0], "load"):
                group.extractors[0].load()

    def _names(self, names: Collection[str] | None) -> list[str]:
        if names is None:
            return self.names
        unknown = [n for n in names if n not in self.extractors]
        if unknown:
            raise KeyError(f"features {unknown} are not in this embedder ({', '.join(self.names)})")
        return list(names)

    def prepare(self, rgb: np.ndarray, names: Collection[str] | None = None) -> dict[str, Any]:
        """The per-image inputs for ``names`` (default: all): one entry per group, keyed by group."""
        groups = dict.fromkeys(self._group_of[n] for n in self._names(names))
        return {g.key: g.prepare(rgb) for g in groups}

    def extract(
        self, prepared: Sequence[dict[str, Any]], wanted: Sequence[Collection[str]] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Vectors for a batch: item i gets every feature of ``wanted[i]`` (default: all) whose
        group it has prepared input for.  One run per group over the items that carry it."""
        wanted = [set(self.names)] * len(prepared) if wanted is None else [set(w) for w in wanted]
        results: list[dict[str, np.ndarray]] = [{} for _ in prepared]
        for group in self._groups:
            carriers = [i for i, item in enumerate(prepared) if group.key in item]
            if not carriers:
                continue
            runs = group.run([prepared[i][group.key] for i in carriers], [wanted[i] for i in carriers])
            for name, (rows, vectors) in runs.items():
                for row, vector in zip(rows, vectors):
                    results[carriers[row]][name] = vector
        return results

    def embed(self, images: Sequence[np.ndarray], names: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Vectors of ``names`` (default: all) for decoded RGB images: name -> (len(images), dim)."""
        names = self._names(names)
        items = self.extract([self.prepare(rgb, names) for rgb in images], [names] * len(images))
        return {
            n: np.stack([item[n] for item in items]) if items else np.zeros((0, self.extractors[n].dim), np.float32)
            for n in names
        }
