"""Near-duplicate detection: quality on transformed copies of real covers, and dedupe at scale.

Stages (each caches its output under --out, so a later stage can be re-run alone):

  copies    For --originals covers drawn (seeded) from covers5, write one copy per transformation
            (coversearch/bench/transforms.py) as a JPEG file and embed each copy with the
            product's own extractors (phash, vgg16) from its file: copies.npz.
  quality   The store (covers5, with phash and vgg16 vectors; the copies' originals are in it) is the
            haystack.  For every copy, its stored neighbours (k-NN through the index layer) within a
            threshold are its predicted duplicates: a hit when the copy's original is among them,
            a false match for any other album.  Thresholds are chosen on the first half of the
            originals (the largest whose precision on all transformations but mirror is >= 0.99),
            and precision / recall / F1 are reported on the second half, per transformation and
            overall, per method, beside imagededup's defaults (pHash at Hamming 10, CNN cosine
            similarity 0.9 = distance 0.1).  Mirror is reported on its own.
  incremental  The stored groups on a copy of the store: keypoints stored, a whole placement, dedupe
            on the unchanged store, placing one new cover at a time (p50/p99), removing albums.
  ingest-cost  Ingest covers/s with the default features, with and without keypoints.
  rebuild   The whole `dedupe --rebuild` (candidates + verification + write) over --n synthetic
            albums through the product's placement: vectors as in `scale`, each album reading a real
            cover's stored keypoints record (planted pairs: a real cover and a transformed copy).
            Run it under /usr/bin/time -v for the peak RSS of the process.
  scale     Dedupe (`coversearch.dedupe`) over 100k and 1M synthetic vectors built from the
            store's real ones (tiled, plus noise), with planted duplicate pairs: time, peak RSS, and
            how many planted pairs were found.  Each size runs in a fresh process for a clean RSS.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py copies --db /tmp/covers5.duckdb
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py quality --db /tmp/covers5.duckdb
    PYTHONPATH=. .venv/bin/python benchmarks/bench_dedupe.py scale --db /tmp/covers5.duckdb --sizes 100000,1000000

The store must hold phash and vgg16 vectors for covers5 (`coversearch ingest ../shared/data/covers5`
adds phash to an existing store, computing nothing else).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from coversearch.bench.transforms import MIRROR, TRANSFORMS, transformed_jpeg  # noqa: E402
from coversearch.features.base import extract_images  # noqa: E402
from coversearch.imaging.images import decode_image  # noqa: E402
from coversearch.features.registry import get_extractor  # noqa: E402
from coversearch.dedupe.candidates import CANDIDATE_K  # noqa: E402
from coversearch.dedupe.rules import calibrated_thresholds  # noqa: E402
from coversearch.dedupe.verify import CELL_DIFFERS, MAX_DIFFERING, MIN_INLIERS  # noqa: E402
from coversearch.dedupe import text_veto  # noqa: E402

DEFAULT_DB = REPO / "benchmarks" / "results" / "covers5.duckdb"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "dedupe"
TWINS_FILE = REPO / "benchmarks" / "dedupe_twins.json"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "models" / "vgg16_imagenet_notop.weights.h5"
COVERS5 = REPO.parent / "shared" / "data" / "covers5"
METHOD_FEATURES = ("phash", "vgg16")
# Every stored feature is embedded for each copy (one VGG16 pass for vgg16 and vgg16-layers), so a
# rule over any of them can be scored without embedding the copies again.
COPY_FEATURES = ("phash", "vgg16", "vgg16-layers", "hsv")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- stage 1: the copies ---------------------------------------------------------------------------
def pick_originals(n: int, seed: int) -> list[tuple[str, Path]]:
    """(sha256, path) of n distinct covers drawn with ``seed`` from covers5 (the store's albums are its bytes)."""
    import hashlib

    by_sha: dict[str, Path] = {}
    for path in sorted(COVERS5.glob("*/*")):
        by_sha.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    shas = sorted(by_sha)
    chosen = np.random.default_rng(seed).choice(len(shas), size=n, replace=False)
    return [(shas[i], by_sha[shas[i]]) for i in sorted(chosen)]


def make_copies(args) -> None:
    from PIL import Image

    out = Path(args.out)
    (out / "copies").mkdir(parents=True, exist_ok=True)
    originals = pick_originals(args.originals, args.seed)
    from coversearch.features.embedder import Embedder

    embedder = Embedder(get_extractor(name, vgg16_weights=args.vgg16_weights) for name in COPY_FEATURES)
    reader = None if args.no_text else get_extractor("text")
    if reader is not None:
        reader.load()  # a missing OCR package fails before any work
    texts: list[str] = []
    names = list(TRANSFORMS)
    original_shas, transforms, paths = [], [], []
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in COPY_FEATURES}
    started = time.perf_counter()
    for i, (sha, source) in enumerate(originals):
        with Image.open(source) as img:
            img = img.convert("RGB")
            rgbs = []
            for name in names:
                path = out / "copies" / name / f"{sha[:16]}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(transformed_jpeg(img, name))
                # Decoded from the file, as ingest or a query would see it.
                rgbs.append(decode_image(path.read_bytes()).rgb)
                original_shas.append(sha)
                transforms.append(name)
                paths.append(str(path))
        for feature, batch in embedder.embed(rgbs).items():
            vectors[feature].append(batch)
        if reader is not None:  # the text record as ingest stores it (features/text.py), for the text veto
            texts.extend(reader.prepare(rgb) for rgb in rgbs)
        if (i + 1) % 10 == 0:
            rate = (i + 1) * len(names) / (time.perf_counter() - started)
            log(f"{i + 1}/{len(originals)} originals, {rate:.1f} copies/s")
    np.savez(
        out / "copies.npz",
        original_shas=np.asarray(original_shas),
        transforms=np.asarray(transforms),
        paths=np.asarray(paths),
        **{f"vectors_{feature}": np.concatenate(v) for feature, v in vectors.items()},
        **({"text": np.asarray(texts)} if texts else {}),
    )
    log(f"wrote {len(paths)} copies of {len(originals)} originals to {out} in {time.perf_counter() - started:.0f} s")

# -- covers5's own near-duplicates -------------------------------------------------------------------
# covers5 holds real near-duplicates of its own (one album's cover in several Discogs scans), so a
# copy matching another covers5 album is not always a false match.  Pairs (original, stored album)
# that some method matches are labelled by eye in TWINS_FILE ("same" cover or "different"); a
# match with a "same" album counts as correct (it does not count towards recall), anything else,
# labelled or not, as false.  `twins` lists what is still unlabelled and draws it side by side.
LOOSE = {"phash": 12.0, "vgg16": 0.15}  # candidates for labelling: looser than any threshold chosen


def load_twins() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    data = json.loads(TWINS_FILE.read_text()) if TWINS_FILE.exists() else {"same": [], "different": []}
    norm = lambda pairs: {tuple(sorted(p)) for p in pairs}  # noqa: E731
    return norm(data["same"]), norm(data["different"])


def twins(args) -> None:
    from PIL import Image, ImageDraw

    from coversearch import metrics

    from coversearch.features.registry import default_metric
    from coversearch.dedupe.candidates import open_dedupe_index
    from coversearch.store import Store

    copies = dict(np.load(Path(args.out) / "copies.npz"))
    same, different = load_twins()
    shas = sorted(set(copies["original_shas"].tolist()))
    with Store.open(Path(args.db), read_only=True) as store:
        by_sha = store.album_ids_by_sha()
        sha_of = {v: k for k, v in by_sha.items()}
        originals = np.asarray([by_sha[s] for s in shas])
        todo = set()
        for feature, loose in LOOSE.items():
            fs = store.feature_set(feature)
            ids, vectors = store.load_embeddings(fs, originals)
            index, _ = open_dedupe_index(store, feature, default_metric(feature))
            nn_ids, nn_d = index.batch_search(vectors, 20)
            for a, row, dist in zip(ids, nn_ids, nn_d):
                for b in row[(dist <= loose) & (row != a) & (row >= 0)]:
                    pair = tuple(sorted((sha_of[int(a)], sha_of[int(b)])))
                    if pair not in same and pair not in different:
                        todo.add(pair)
        albums = store.albums([by_sha[x] for pair in todo for x in pair])
    todo = sorted(todo)
    print(json.dumps([list(p) for p in todo]))
    for start in range(0, len(todo), 10):
        chunk = todo[start : start + 10]
        sheet = Image.new("RGB", (380, 130 * len(chunk)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, pair in enumerate(chunk):
            for j, sha in enumerate(pair):
                with Image.open(albums[by_sha[sha]]["path"]) as img:
                    sheet.paste(img.convert("RGB").resize((125, 125)), (j * 130, i * 130))
            draw.text((265, i * 130 + 50), f"{start + i}", fill="black")
        sheet.save(Path(args.out) / f"twins-{start // 10}.png")
    log(f"{len(todo)} unlabelled candidate pairs; sheets in {args.out}/twins-*.png")


# -- stage 2: quality --------------------------------------------------------------------------------
K = 100  # stored neighbours kept per copy: far more than any threshold here admits
TARGET_PRECISION = 0.99
GRIDS = {"phash": np.arange(0, 33, dtype=float), "vgg16": np.round(np.arange(0.0, 0.5001, 0.0025), 4)}
# Keypoint-verified rules: (sure, verified up to) per feature, and the inliers a candidate needs.
VERIFY_GRIDS = {
    "phash": [(sure, up) for sure in (6, 8, 10) for up in (sure, 12, 16, 20)],
    "vgg16": [(sure, up) for sure in (0.075, 0.1, 0.125) for up in (sure, 0.2, 0.25, 0.3)],
}
MIN_INLIERS_GRID = (15, 20, 25, 30, 40, 50)
# The aligned comparison, chosen after the geometry: a cell differs above CELL_DIFFERS_GRID grey
# levels; a candidate is kept when at most MAX_DIFFERING_GRID of the shared cells differ.
CELL_DIFFERS_GRID = (15, 20, 25, 30, 40)
MAX_DIFFERING_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
# The text veto (coversearch/dedupe/text_veto.py), chosen last, on top of the product default's
# verification: which lines count (recogniser score, letters), when two lines say the same (edit
# distance share), and above which aligned difference a line is hidden rather than changed (None: never).
VETO_GRID = [
    {"min_score": s, "min_chars": c, "agree": a, "occluded": o}
    for s in (0.8, 0.9) for c in (4, 6) for a in (0.25, 0.3, 0.4) for o in (None, 40.0)
]
# The product's own veto (text_veto's constants), scored as "product default" when the copies carry text.
PRODUCT_VETO = {"min_score": text_veto.MIN_SCORE, "min_chars": text_veto.MIN_CHARS, "agree": text_veto.AGREE,
                "occluded": text_veto.OCCLUDED}
MIN_INLIERS_ANY = 15  # the fewest inliers any grid rule asks for: pairs below never need the veto's figures


def veto_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


# imagededup's defaults: PHash max_distance_threshold=10, CNN min_similarity_threshold=0.9.
BASELINES = {"phash": 10.0, "vgg16": 0.1}


def neighbours(db: Path, copies: dict) -> tuple[dict, np.ndarray, dict]:
    """For each feature, (ids, distances) of the K stored albums nearest to each copy, through the index layer;
    each copy's original album id; album id -> sha256."""
    from coversearch.dedupe.candidates import open_dedupe_index
    from coversearch import metrics
    from coversearch.features.registry import default_metric
    from coversearch.store import Store

    found = {}
    with Store.open(db, read_only=True) as store:
        by_sha = store.album_ids_by_sha()
        originals = np.asarray([by_sha[sha] for sha in copies["original_shas"]], dtype=np.int64)
        sha_of = {album: sha for sha, album in by_sha.items()}
        for feature in METHOD_FEATURES:
            index, label = open_dedupe_index(store, feature, default_metric(feature))
            started = time.perf_counter()
            found[feature] = index.batch_search(copies[f"vectors_{feature}"], K)
            log(f"{feature}: {len(originals)} copies searched against {len(index)} albums with {label} in {time.perf_counter() - started:.1f} s")
    return found, originals, sha_of


def _plain(value) -> tuple[float, float]:
    """(sure, up to) of a rule's entry: a number is a plain threshold (nothing verified)."""
    return (value, value) if np.isscalar(value) else tuple(value)


def _confirmed(match, rule: dict) -> bool:
    if match is None or match[0] < rule["min_inliers"]:
        return False
    if rule.get("max_differing") is not None and match[1][CELL_DIFFERS_GRID.index(rule["cell_differs"])] > rule["max_differing"] + 1e-9:
        return False
    return not _vetoed(match, rule)


def _vetoed(match, rule: dict) -> bool:
    """Whether the rule's text veto (``rule["veto"]``: VETO_GRID params) rejects a pair whose pictures
    agree (enough inliers, few differing cells: ``text_veto.vetoed``) but whose words do not."""
    if rule.get("veto") is None or match is None or len(match) < 3 or match[0] < rule["min_inliers"]:
        return False
    if rule.get("max_differing") is not None and match[1][CELL_DIFFERS_GRID.index(rule["cell_differs"])] > rule["max_differing"] + 1e-9:
        return False
    return match[2].get(veto_key(rule["veto"]), 0) >= 1


def counts(found: dict, originals: np.ndarray, rule: dict, rows: np.ndarray, twins, matches=None) -> tuple[int, int, int, int]:
    """(copies whose original was matched, matches with a labelled twin of the original, false matches,
    copies) over ``rows`` under a rule (feature -> threshold, or (sure, up to) for a keypoint-verified
    feature, plus "min_inliers" and optionally the aligned comparison's "cell_differs" and
    "max_differing"; a match when any feature holds).  ``matches``: (copy row, album) -> (inliers,
    share of differing cells at each CELL_DIFFERS_GRID value)."""
    same, sha_of = twins
    features = [f for f in rule if f in found]
    predicted = np.zeros((len(rows), K * len(features)), dtype=np.int64) - 1
    for j, feature in enumerate(features):
        sure, up_to = _plain(rule[feature])
        ids, dist = found[feature]
        ok = dist[rows] <= sure + 1e-9
        if rule.get("veto") is not None and rule.get("veto_sure"):  # the veto on pairs within the sure distance too
            for r, c in np.argwhere(ok).tolist():
                ok[r, c] = not _vetoed(matches.get((int(rows[r]), int(ids[rows[r], c]))), rule)
        if up_to > sure:
            band = np.argwhere((dist[rows] <= up_to + 1e-9) & ~ok & (np.arange(K) < CANDIDATE_K)[None, :])
            for r, c in band.tolist():
                ok[r, c] = _confirmed(matches.get((int(rows[r]), int(ids[rows[r], c]))), rule)
        predicted[:, j * K : (j + 1) * K] = np.where(ok, ids[rows], -1)
    tp = twin = fp = 0
    for row, original in zip(predicted, originals[rows]):
        matched = set(row[row >= 0].tolist())
        tp += original in matched
        for other in matched - {original}:
            if tuple(sorted((sha_of[original], sha_of[other]))) in same:
                twin += 1
            else:
                fp += 1
    return tp, twin, fp, len(rows)


def copy_matches(db: Path, copies: dict, found: dict, out: Path) -> dict[tuple[int, int], tuple[int, list[float]]]:
    """Keypoint match (``coversearch.dedupe.verify.match``) of every (copy, stored album) pair
    that some grid rule would verify: among the copy's CANDIDATE_K nearest under a feature, within
    the loosest grid threshold.  The copy is described from its file (mirrored too, as `check`
    does), the album from its stored file.  Cached in matches.json as (inliers, share of differing
    cells at each CELL_DIFFERS_GRID value)."""
    from coversearch.dedupe import text_veto
    from coversearch.dedupe.verify import KeypointCache, match
    from coversearch.features.keypoints import keypoints
    from coversearch.store import Store

    cache_file = out / "matches-text.json"  # (inliers, differing shares, text veto conflicts per VETO_GRID entry)
    cached = {tuple(map(int, k.split(","))): tuple(v) for k, v in json.loads(cache_file.read_text()).items()} if cache_file.exists() else {}
    wanted = set()
    for feature, (ids, dist) in found.items():
        loose = max(_plain(v)[1] for v in VERIFY_GRIDS[feature])
        sure = max(_plain(v)[0] for v in VERIFY_GRIDS[feature])
        # Also every pair within a sure distance at any rank: the text veto may be applied to them.
        for r, c in np.argwhere(((dist <= loose + 1e-9) & (np.arange(K) < CANDIDATE_K)[None, :]) | (dist <= sure + 1e-9)).tolist():
            wanted.add((r, int(ids[r, c])))
    todo = sorted(wanted - set(cached))
    if todo:
        started = time.perf_counter()
        texts = copies.get("text")
        with Store.open(db, read_only=True) as store:
            albums = KeypointCache(store)  # with the albums' stored text records, as verification reads them
            albums.load({a for _, a in todo})
            copy_kp = {}
            for row, album in todo:
                if row not in copy_kp:
                    copy_kp[row] = keypoints(decode_image(Path(copies["paths"][row]).read_bytes()).rgb, mirrored=True)
                    copy_kp[row].text = text_veto.parse(str(texts[row])) if texts is not None else None
                stored = albums.get(album)
                if stored is None:
                    cached[(row, album)] = (0, [1.0] * len(CELL_DIFFERS_GRID), {})
                    continue
                m = match(copy_kp[row], stored)
                vetoes = {}
                if m.inliers >= MIN_INLIERS_ANY and not m.mirrored and copy_kp[row].text is not None and stored.text is not None:
                    for params in VETO_GRID:
                        vetoes[veto_key(params)] = len(text_veto.conflicts(copy_kp[row].text, stored.text, m.transform, m.grid, **params))
                cached[(row, album)] = (m.inliers, [round(m.differing(t), 4) for t in CELL_DIFFERS_GRID], vetoes)
        seconds = time.perf_counter() - started
        log(f"keypoints: {len(todo)} pairs ({len(copy_kp)} copies, {len({a for _, a in todo})} albums) matched in {seconds:.0f} s")
        cache_file.write_text(json.dumps({f"{r},{a}": list(v) for (r, a), v in cached.items()}))
    return cached


def prf(tp: int, twin: int, fp: int, n: int) -> tuple[float, float, float]:
    p = (tp + twin) / (tp + twin + fp) if tp + twin + fp else 1.0
    r = tp / n if n else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def choose(found, originals, rows, rules: list[dict], twins, matches=None) -> dict:
    """The rule with the highest recall whose precision is >= the target (ties: higher precision,
    then the stricter aligned comparison: fewer differing cells allowed, then a lower cell limit)."""
    best, best_key = None, None
    for rule in rules:
        p, r, _ = prf(*counts(found, originals, rule, rows, twins, matches))
        key = (p >= TARGET_PRECISION, r if p >= TARGET_PRECISION else p, p,
               -rule.get("max_differing", 0), -rule.get("cell_differs", 0), *_veto_preference(rule))
        if best_key is None or key > best_key:
            best, best_key = rule, key
    return best


def _veto_preference(rule: dict) -> tuple:
    """Among text vetoes that score alike, the stricter (as for the aligned comparison): sure pairs
    vetoed too, less sure and shorter lines counted, a closer agreement asked, no line taken as hidden."""
    veto = rule.get("veto")
    if veto is None:
        return ()
    return (bool(rule.get("veto_sure")), -veto["min_score"], -veto["min_chars"], -veto["agree"], veto["occluded"] is None)


def quality(args) -> None:
    out = Path(args.out)
    copies = dict(np.load(out / "copies.npz"))
    # Hashes are cheap: made again from the files, so they always come from the current phash code.
    phash = get_extractor("phash")
    copies["vectors_phash"] = extract_images(phash, [decode_image(Path(p).read_bytes()).rgb for p in copies["paths"]])
    found, originals, sha_of = neighbours(Path(args.db), copies)
    twins = (load_twins()[0], sha_of)
    transforms = copies["transforms"]
    shas = sorted(set(copies["original_shas"].tolist()))
    calibration_shas = set(shas[0::2])  # every other original (sorted by sha256): a fixed half
    in_calibration = np.asarray([s in calibration_shas for s in copies["original_shas"]])
    not_mirror = transforms != MIRROR
    calibrate = np.flatnonzero(in_calibration & not_mirror)
    candidates = {
        "phash": [{"phash": t} for t in GRIDS["phash"]],
        "vgg16": [{"vgg16": t} for t in GRIDS["vgg16"]],
        "phash or vgg16": [{"phash": tp, "vgg16": tv} for tp in GRIDS["phash"][:25] for tv in GRIDS["vgg16"][:101:2]],
    }
    matches = copy_matches(Path(args.db), copies, found, out)
    candidates["phash or vgg16, keypoint-verified"] = [
        {"phash": p, "vgg16": v, "min_inliers": m}
        for p in VERIFY_GRIDS["phash"] for v in VERIFY_GRIDS["vgg16"] for m in MIN_INLIERS_GRID
    ]
    methods = {f"{name} (calibrated)": choose(found, originals, calibrate, rules, twins, matches) for name, rules in candidates.items()}
    # The aligned comparison is chosen second, on top of the verified geometry chosen above.
    geometry = methods["phash or vgg16, keypoint-verified (calibrated)"]
    methods["phash or vgg16, keypoint-verified + aligned comparison (calibrated)"] = choose(
        found, originals, calibrate,
        [{**geometry, "cell_differs": t, "max_differing": m} for t in CELL_DIFFERS_GRID for m in MAX_DIFFERING_GRID], twins, matches)
    # The text veto is chosen last, on top of the product's verification (geometry + aligned comparison).
    default = {**{f: calibrated_thresholds(METHOD_FEATURES)[f] for f in METHOD_FEATURES}, "min_inliers": MIN_INLIERS,
               "cell_differs": CELL_DIFFERS, "max_differing": MAX_DIFFERING}
    if "text" in copies:
        methods["product verification + text veto (calibrated)"] = choose(
            found, originals, calibrate,
            [{**default, "veto": params, "veto_sure": sure} for sure in (False, True) for params in VETO_GRID], twins, matches)
        methods["product default without text veto"] = default
    methods["product default"] = {**default, **({"veto": PRODUCT_VETO} if "text" in copies else {})}
    methods["pHash, Hamming 10 (imagededup default)"] = {"phash": BASELINES["phash"]}
    methods["CNN cosine 0.9 (imagededup default, our vgg16)"] = {"vgg16": BASELINES["vgg16"]}
    test = ~in_calibration
    results = {"originals": len(shas), "calibration_originals": len(calibration_shas), "copies": int(len(transforms)),
               "methods": {}}
    for name, rule in methods.items():
        entry = {"rule": rule, "by_transform": {}}
        for subset, mask in (("all but mirror", test & not_mirror), ("mirror", test & ~not_mirror)):
            tp, twin, fp, n = counts(found, originals, rule, np.flatnonzero(mask), twins, matches)
            entry[subset] = dict(zip(("precision", "recall", "f1"), prf(tp, twin, fp, n)), tp=tp, twin=twin, fp=fp, n=n)
        for t in TRANSFORMS:
            tp, twin, fp, n = counts(found, originals, rule, np.flatnonzero(test & (transforms == t)), twins, matches)
            entry["by_transform"][t] = dict(zip(("precision", "recall", "f1"), prf(tp, twin, fp, n)), tp=tp, twin=twin, fp=fp, n=n)
        results["methods"][name] = entry
    (out / "quality.json").write_text(json.dumps(results, indent=2))
    text = quality_markdown(results)
    (out / "quality.md").write_text(text)
    print(text)
    if args.readme:
        from benchmarks.readme_blocks import replace_block

        replace_block(REPO / "benchmarks" / "README.md", "dedupe-quality", text)


def _rule_text(rule: dict) -> str:
    parts = []
    for f, value in rule.items():
        if f in ("min_inliers", "cell_differs", "max_differing", "veto", "veto_sure"):
            continue
        sure, up_to = _plain(value)
        parts.append(f"{f} <= {sure:g}" + (f" (<= {up_to:g} verified)" if up_to > sure else ""))
    text = " or ".join(parts)
    if any(_plain(v)[1] > _plain(v)[0] for f, v in rule.items() if f in METHOD_FEATURES):
        text += f"; verified: >= {rule['min_inliers']} ORB inliers, {CANDIDATE_K} nearest"
        if rule.get("max_differing") is not None:
            text += f", aligned: <= {rule['max_differing']:.0%} of cells differ by > {rule['cell_differs']} grey levels"
    if rule.get("veto") is not None:
        v = rule["veto"]
        hidden = f", not where the aligned cells differ by > {v['occluded']:g}" if v["occluded"] is not None else ""
        text += (f"; text veto{' (sure pairs too)' if rule.get('veto_sure') else ''}: a line (score >= {v['min_score']:g}, "
                 f">= {v['min_chars']} characters) that reads otherwise in the other cover's aligned place (edit distance > "
                 f"{v['agree']:.0%}){hidden}")
    return text


def quality_markdown(results: dict) -> str:
    lines = [
        f"{results['copies']} copies of {results['originals']} covers5 originals ({len(TRANSFORMS)} transformations each), "
        f"searched among all covers5 albums; thresholds chosen on {results['calibration_originals']} originals "
        f"(highest recall at precision >= {TARGET_PRECISION} on all transformations but mirror), figures below on the "
        "other half only.",
        "",
        "| method | rule | precision | recall | F1 | twin matches | false matches | mirror: precision | mirror: recall |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["methods"].items():
        a, m = entry["all but mirror"], entry["mirror"]
        lines.append(
            f"| {name} | {_rule_text(entry['rule'])} | {a['precision']:.3f} | {a['recall']:.3f} | {a['f1']:.3f} | {a['twin']} | {a['fp']} | "
            f"{m['precision']:.3f} | {m['recall']:.3f} |"
        )
    lines += ["", "Recall per transformation (test half; precision and F1 in brackets):", ""]
    names = list(results["methods"])
    lines.append("| transformation | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for t in TRANSFORMS:
        cells = []
        for name in names:
            e = results["methods"][name]["by_transform"][t]
            cells.append(f"{e['recall']:.2f} ({e['precision']:.2f}, {e['f1']:.2f})")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- stage 3: scale ----------------------------------------------------------------------------------
SCALE_INDEX = {  # the index each feature's dedupe runs through at scale (index-layer kinds and params)
    "phash": ("faiss-binary", {"nhash": 4, "hash_bits": 16, "nflip": 2}),  # exact within 11 bits >= the threshold
    "vgg16": ("faiss-hnsw", {"M": 16, "efConstruction": 100, "efSearch": 64}),
}
PLANTED_SHARE = 0.01  # one row in a hundred gets a planted near copy
TRAIN_ROWS = 131072  # indexes that can add vectors are trained on this many rows, then filled in chunks


def synthetic(feature: str, real: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n vectors, planted pairs (rows a, b)): real vectors tiled, each tile perturbed so that tiles of
    one cover are not near-duplicates of each other; then PLANTED_SHARE of the rows overwritten by a
    near copy of another row (within the feature's default threshold)."""
    rng = np.random.default_rng(seed)
    planted = int(n * PLANTED_SHARE)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    chunk = 65536
    if feature == "phash":
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            bits = real[rows % len(real)].copy()
            flips = rng.random(bits.shape) < 0.25  # ~16 bits per tile: tiles land ~25 bits apart
            out[rows] = np.where(flips, 1 - bits, bits)
    else:
        unit = real / np.linalg.norm(real, axis=1, keepdims=True)
        sigma = 0.75 / np.sqrt(real.shape[1])  # noise of norm ~0.75, the median real nearest-neighbour distance
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            out[rows] = unit[rows % len(unit)] + rng.normal(0, sigma, size=(len(rows), real.shape[1])).astype(np.float32)
    sources = rng.choice(n, size=planted, replace=False)
    targets = (sources + rng.integers(1, n, size=planted)) % n
    keep = ~np.isin(targets, sources)
    sources, targets = sources[keep], targets[keep]
    _, first = np.unique(targets, return_index=True)
    sources, targets = sources[first], targets[first]
    if feature == "phash":
        copies = out[sources].copy()
        for row, flips in zip(copies, rng.integers(0, 5, size=len(copies))):  # 0-4 bits
            where = rng.choice(copies.shape[1], size=flips, replace=False)
            row[where] = 1 - row[where]
    else:
        copies = out[sources] / np.linalg.norm(out[sources], axis=1, keepdims=True)
        copies = copies + rng.normal(0, 0.2 / np.sqrt(real.shape[1]), size=copies.shape).astype(np.float32)  # cos dist ~0.02
    out[targets] = copies
    return out, np.stack([np.minimum(sources, targets), np.maximum(sources, targets)], axis=1)


def scale_one(args) -> None:
    """One (feature, n) run in this process: prints one JSON line."""
    from coversearch import metrics
    from coversearch.features.registry import default_metric
    from coversearch.dedupe.candidates import near_pairs
    from coversearch.dedupe.rules import make_rule
    from coversearch.store import Store

    feature, n = args.feature, args.n
    with Store.open(Path(args.db), read_only=True) as store:
        _, real = store.load_embeddings(store.feature_set(feature))
    vectors, planted = synthetic(feature, real, n, seed=n)
    del real
    ids = np.arange(n, dtype=np.int64)
    rule = make_rule(feature, None, vectors.shape[1])  # the default rule: sure pairs, and candidates to verify
    kind, params = SCALE_INDEX[feature] if not args.kind else (args.kind, json.loads(args.params or "{}"))
    started = time.perf_counter()
    if kind == "selfjoin":  # the clustered self-join (coversearch/index/selfjoin.py): no index, blocks of products
        from coversearch.dedupe.candidates import self_join_search

        search = self_join_search(vectors, ids, default_metric(feature), nlist=params.get("nlist"), nprobe=params.get("nprobe", 8))
        built = time.perf_counter()
        a, b, d = near_pairs(None, vectors, ids, rule, search=search)
        index = None
    else:
        index = _scale_index(kind, feature, vectors, ids, params)
        built = time.perf_counter()
        a, b, d = near_pairs(index, vectors, ids, rule)
    _scale_report(args, feature, n, kind, params, rule, index, vectors, ids, planted, a, b, d, started, built)


def _scale_index(kind, feature, vectors, ids, params):
    from coversearch import metrics
    from coversearch.features.registry import default_metric
    from coversearch.index.registry import create_index

    index = create_index(kind, default_metric(feature), vectors.shape[1], params)
    if index.supports_add and len(ids) > TRAIN_ROWS:
        # Trained on a sample, then filled a chunk at a time: the index's own copy of the vectors
        # (unit rows for cosine) never exists whole beside the bench's.
        index.fit(vectors[:TRAIN_ROWS], ids[:TRAIN_ROWS])
        for start in range(TRAIN_ROWS, len(ids), 65536):
            index.add(vectors[start : start + 65536], ids[start : start + 65536])
    else:
        index.fit(vectors, ids)
    return index


def _scale_report(args, feature, n, kind, params, rule, index, vectors, ids, planted, a, b, d, started, built):
    from coversearch.dedupe.groups import connected_components

    to_verify = np.asarray([not rule.accepts(x) for x in d.tolist()], dtype=bool)
    # Candidates beyond the sure distance would each be verified from their two images, which
    # synthetic vectors do not have: they are counted here (and costed in the README), and the
    # groups are made from the sure pairs plus the planted ones among the candidates.
    verify_count = int(to_verify.sum())
    planted_set = set(map(tuple, planted.tolist()))
    confirmed = np.asarray([(int(x), int(y)) in planted_set for x, y in zip(a[to_verify].tolist(), b[to_verify].tolist())], dtype=bool)
    keep = ~to_verify
    keep[np.flatnonzero(to_verify)[confirmed]] = True
    a, b = a[keep], b[keep]
    searched = time.perf_counter()
    groups = connected_components(ids, a, b)
    done = time.perf_counter()
    found = set(zip(a.tolist(), b.tolist()))
    hits = sum((int(x), int(y)) in found for x, y in planted)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024
    print(json.dumps({
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # the process's CPU: comparable under load, unlike wall time
        "feature": feature, "n": n, "kind": kind, "params": (index.build_params | index.query_params) if index is not None else params, "rule": rule.label,
        "build_s": round(built - started, 1), "pairs_s": round(searched - built, 1), "components_s": round(done - searched, 1),
        "total_s": round(done - started, 1), "peak_rss_mib": round(peak / 2**20), "index_mib": round(index.memory_bytes() / 2**20) if index is not None else 0,
        "planted": len(planted), "planted_found": hits, "pairs": int(len(a)), "groups": len(groups),
        "to_verify": verify_count, "load": os.getloadavg()[0],
    }), flush=True)


def scale(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "scale.jsonl"
    for n in [int(x) for x in args.sizes.split(",")]:
        for feature in args.features.split(","):
            log(f"dedupe {feature} at n={n:,} (fresh process)")
            cmd = [sys.executable, __file__, "scale-one", "--db", str(args.db), "--feature", feature, "--n", str(n)]
            if args.kind:
                cmd += ["--kind", args.kind, "--params", args.params or "{}"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            if done.returncode != 0:
                log(f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
                continue
            line = done.stdout.strip().splitlines()[-1]
            log(line)
            with open(results_file, "a") as fh:
                fh.write(line + "\n")
    text = scale_markdown([json.loads(line) for line in results_file.read_text().splitlines() if line.strip()])
    (out / "scale.md").write_text(text)
    print(text)
    if args.readme:
        from benchmarks.readme_blocks import replace_block

        replace_block(REPO / "benchmarks" / "README.md", "dedupe-scale", text)


def scale_markdown(rows: list[dict]) -> str:
    latest = {(r["feature"], r["n"], r["rule"]): r for r in rows}  # the last run of each
    lines = [
        "| feature | vectors | index (params) | rule | build s | pairs s | components s | total s | peak RSS MiB | "
        "planted pairs found | candidates to verify | load |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (feature, n, _), r in sorted(latest.items()):
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        verify = f"{r['to_verify']:,}" if "to_verify" in r else "-"
        load = f"{r['load']:.1f}" if "load" in r else "-"
        lines.append(
            f"| {feature} | {n:,} | {r['kind']} ({params}) | {r['rule']} | {r['build_s']} | {r['pairs_s']} | "
            f"{r['components_s']} | {r['total_s']} | {r['peak_rss_mib']:,} | {r['planted_found']:,} / {r['planted']:,} | {verify} | {load} |"
        )
    return "\n".join(lines) + "\n"


# -- the whole rebuild at scale: candidates + verification, the product's placement ------------------
def borrowed_records(db: Path, n: int, planted: dict[str, np.ndarray], seed: int, copies: int) -> tuple[np.ndarray, list[bytes], dict]:
    """Which real keypoints record each of ``n`` synthetic albums reads, and the records: album i
    (a tile of real cover i mod R in the synthetic vectors) reads the record of real cover
    perm_t(i mod R), a permutation per tile t (the identity for the first), so that two tiles of one
    cover, which the synthetic vectors make candidates of each other, do not read one record twice.
    Each planted pair reads a real (original, transformed copy) pair: ``copies`` covers are drawn,
    each transformed once (coversearch/bench/transforms.py, not mirrored) and described from the
    decoded JPEG, as ingest would."""
    from PIL import Image

    from coversearch.features.keypoints import keypoints
    from coversearch.store import Store

    with Store.open(db, read_only=True) as store:
        fs = max((f for f in store.feature_sets(records=True) if f.name == "keypoints"), key=lambda f: f.version)
        ids = store.embedding_album_ids(fs)
        found = store.load_records(fs, ids)
        albums = store.albums(ids.tolist())
    real = [found[int(a)] for a in ids]
    r = len(real)
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    tile = rows // r
    borrow = rows % r
    for t in range(1, int(tile.max()) + 1):
        here = tile == t
        borrow[here] = rng.permutation(r)[borrow[here]]
    chosen = rng.choice(r, size=copies, replace=False)
    names = [t for t in TRANSFORMS if t != MIRROR]
    copy_of = {}
    for c in chosen.tolist():
        with Image.open(albums[int(ids[c])]["path"]) as img:
            jpeg = transformed_jpeg(img.convert("RGB"), names[int(rng.integers(len(names)))])
        copy_of[c] = len(real)
        real.append(keypoints(decode_image(jpeg).rgb).to_bytes())
    for pairs in planted.values():
        originals = rng.choice(chosen, size=len(pairs))
        borrow[pairs[:, 0]] = originals
        borrow[pairs[:, 1]] = [copy_of[int(c)] for c in originals]
    return borrow, real, {"real_records": r, "copies": copies}


def rebuild_one(args) -> None:
    """The whole `dedupe --rebuild` over --n synthetic albums, through the product's placement
    (``dedupe.stored.place_all``: candidates, exact distances, verification) per rule, then
    ``Store.dedupe_write`` into a fresh store: one JSON line with each stage."""
    import tempfile

    from coversearch.dedupe.groups import connected_components
    from coversearch.dedupe.rules import default_rules
    from coversearch.dedupe.stored import Placement, place_all, rule_key
    from coversearch.dedupe.verify import KeypointCache
    from coversearch.store import Store

    import logging

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    n = args.n
    started = time.perf_counter()
    with Store.open(Path(args.db), read_only=True) as store:
        # vgg16 first: its stages are reported before the pHash band's long verification.
        rules = sorted(default_rules(store), key=lambda r: r.feature != "vgg16")
        real = {r.feature: store.load_embeddings(store.feature_set(r.feature))[1] for r in rules}
        versions = {r.feature: store.feature_set(r.feature).version for r in rules}
    planted = {}
    for rule in rules:  # the planted pairs first; each feature's vectors are made again when placed (held one at a time, as place() does)
        planted[rule.feature] = synthetic(rule.feature, real[rule.feature], n, seed=n)[1]
    borrow, records, about = borrowed_records(Path(args.db), n, planted, seed=n, copies=args.originals)
    cache = KeypointCache(None, records=lambda wanted: {a: records[borrow[a]] for a in wanted})
    ids = np.arange(n, dtype=np.int64)
    row: dict = {"n": n, "load_start": os.getloadavg()[0], "prepare_s": round(time.perf_counter() - started, 1), **about, "rules": {}}
    rebuild_s = 0.0
    verdicts: dict = {}
    holding_a, holding_b = [], []
    tmp = tempfile.mkdtemp(prefix="rebuild-")
    with Store.open(Path(tmp) / "groups.duckdb") as out_store:
        for rule in rules:
            out = Placement()
            vectors = synthetic(rule.feature, real[rule.feature], n, seed=n)[0]
            cpu = time.process_time()
            clock = time.perf_counter()
            todo, kth, (q, o, d), fresh = place_all(rule, ids, vectors, verdicts, cache, out)
            del vectors
            placed_s = time.perf_counter() - clock
            rebuild_s += placed_s
            clock = time.perf_counter()
            out_store.dedupe_write(rule.feature, rule_key(rule, versions[rule.feature]), todo, kth, (q, o, d), fresh, reset=True)
            write_s = time.perf_counter() - clock
            rebuild_s += write_s
            within = d <= rule.threshold + 1e-9
            a, b, dist = np.minimum(q, o)[within], np.maximum(q, o)[within], d[within]
            holds = np.asarray([rule.accepts(x) or verdicts.get((int(i), int(j)), (0, 1.0, False))[2]
                                for i, j, x in zip(a.tolist(), b.tolist(), dist.tolist())], dtype=bool)
            holding_a.append(a[holds])
            holding_b.append(b[holds])
            found = {(int(x), int(y)) for x, y in zip(a[holds].tolist(), b[holds].tolist())}
            confirmed = sum(v[2] for v in (verdicts[(f[0], f[1])] for f in fresh))
            row["rules"][rule.feature] = {
                "rule": rule.label, "stages_s": {k: round(v, 1) for k, v in out.stages.items()}, "place_s": round(placed_s, 1),
                "write_s": round(write_s, 1), "cpu_s": round(time.process_time() - cpu, 1), "candidate_rows": int(len(q)),
                "verified": len(fresh), "confirmed": int(confirmed),
                "ms_per_verified_pair": round(out.stages.get("verify", 0) * 1000 / max(len(fresh), 1), 3),
                "planted": int(len(planted[rule.feature])),
                "planted_found": int(sum((int(x), int(y)) in found for x, y in planted[rule.feature])),
            }
            log(json.dumps(row["rules"][rule.feature]))
    clock = time.perf_counter()
    groups = connected_components(ids, np.concatenate(holding_a), np.concatenate(holding_b))
    row["groups"] = len(groups)
    row["albums_in_groups"] = int(sum(len(g) for g in groups))
    row["components_s"] = round(time.perf_counter() - clock, 1)
    row["rebuild_s"] = round(rebuild_s + row["components_s"], 1)  # placement + write of both rules + the groups, not the synthetic data
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)
    row["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    row["load_end"] = os.getloadavg()[0]
    row["cpu"] = f"{os.cpu_count()} x {_cpu_model()}"
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(row), flush=True)
    with open(Path(args.out) / "rebuild.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


# -- the split: who has a near-duplicate on the other side ------------------------------------------------
FORMER_RULE = (("phash", 10.0), ("vgg16", 0.125))  # the one-stage default before keypoint verification


def split_leaks(args) -> None:
    """Test / validation albums with a near-duplicate in train, for the default rule's groups (read from
    a `coversearch dedupe --json` file, --groups) and the former rule's: under the split made without
    groups, and under group-aware splits made with each rule (seed and fractions of `split make`)."""
    from coversearch.classify.split import DEFAULT_FRACTIONS, DEFAULT_SEED, Split, assign_sides, groups_across_sides
    from coversearch.dedupe.groups import store_groups
    from coversearch.dedupe.rules import make_rule
    from coversearch.store import Store

    new_groups = [[m["album_id"] for m in g["members"]] for g in json.loads(Path(args.groups).read_text())["groups"]]
    with Store.open(Path(args.db), read_only=True) as store:
        rows = store.con.execute(  # as make_split reads them
            "SELECT a.id, a.sha256, list(g.genre) FROM albums a JOIN album_genres g ON g.album_id = a.id GROUP BY a.id, a.sha256"
        ).fetchall()
        albums = [(r[0], r[1], tuple(r[2])) for r in rows]
        former = [make_rule(f, t, store.feature_set(f).dim) for f, t in FORMER_RULE]
        old_groups = store_groups(store, former)
    for name, groups in (("no groups", []), ("group-aware, former rule", old_groups), ("group-aware, default rule", new_groups)):
        split = Split(name, DEFAULT_SEED, DEFAULT_FRACTIONS, assign_sides(albums, DEFAULT_SEED, DEFAULT_FRACTIONS, groups))
        print(json.dumps({"split": name, "albums": split.counts(), "default-rule groups": groups_across_sides(split, new_groups),
                          "former-rule groups": groups_across_sides(split, old_groups)}))


# -- stored groups: what keeping them current costs ----------------------------------------------------
def incremental(args) -> None:
    """On a copy of --db (covers5 with phash and vgg16): store the keypoints (ingest computes only
    them), place every album from nothing (dedupe --rebuild), answer dedupe on the unchanged store,
    place --new covers one ingest at a time (transformed copies of stored covers, so they join
    groups), remove --remove albums; then check the stored groups against a whole dedupe."""
    import random
    import shutil
    import tempfile

    from PIL import Image

    from coversearch.dedupe.groups import store_groups
    from coversearch.dedupe.rules import default_rules
    from coversearch.dedupe.stored import is_current, place, stored_groups, stored_result
    from coversearch.ingest.pipeline import ingest
    from coversearch.ingest.readers import read_source
    from coversearch.store import Store
    from coversearch.store.curate import apply_removal, plan_removal

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "incremental.duckdb"
    shutil.copy(args.db, db)
    os.chmod(db, 0o644)
    subprocess.run([sys.executable, "-m", "coversearch.cli.main", "--db", str(db), "db", "upgrade"], check=True, capture_output=True)
    row: dict = {"albums": None, "load_start": os.getloadavg()[0]}
    weights = str(args.vgg16_weights)
    extractors = [get_extractor(n, vgg16_weights=weights) for n in ("phash", "vgg16", "keypoints")]
    with Store.open(db) as store:
        row["albums"] = store.album_count()
        started = time.perf_counter()
        done = ingest(store, read_source(COVERS5), [get_extractor("keypoints")])
        row["keypoints_ingest_s"] = round(time.perf_counter() - started, 1)
        row["keypoints_per_s"] = round(done.counts.embeddings["keypoints"] / row["keypoints_ingest_s"], 1)
        log(f"keypoints of {done.counts.embeddings['keypoints']} covers stored in {row['keypoints_ingest_s']} s")
        whole = place(store, rebuild=True)
        row["rebuild"] = whole.to_dict()
        log(f"rebuild: {whole.to_dict()}")
        started = time.perf_counter()
        assert is_current(store)
        result = stored_result(store)
        row["unchanged_dedupe_s"] = round(time.perf_counter() - started, 3)
        row["groups"] = len(result.groups)
        rng = random.Random(args.seed)
        stored_files = sorted(store.known_files())
        timings = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.new):
                folder = Path(tmp) / f"n{i}" / "Pop"
                folder.mkdir(parents=True)
                source = Path(rng.choice(stored_files))
                with Image.open(source) as img:
                    (folder / f"copy-{i}.jpg").write_bytes(transformed_jpeg(img, rng.choice([t for t in TRANSFORMS if t != MIRROR])))
                ingest(store, read_source(folder.parent), extractors)
                started = time.perf_counter()
                place(store)
                timings.append((time.perf_counter() - started) * 1000)
        row["place_one_ms"] = {"n": len(timings), "p50": round(float(np.percentile(timings, 50)), 1),
                               "p99": round(float(np.percentile(timings, 99)), 1), "max": round(max(timings), 1)}
        log(f"placing one cover: {row['place_one_ms']}")
        ids = sorted(store.album_ids_by_sha().values())
        started = time.perf_counter()
        apply_removal(store, plan_removal(store, album_ids=rng.sample(ids, args.remove)))
        removed = time.perf_counter()
        again = place(store)
        row["remove"] = {"albums": args.remove, "remove_s": round(removed - started, 2), "place_s": round(time.perf_counter() - removed, 2),
                         "placement": again.to_dict()}
        log(f"removing {args.remove}: {row['remove']}")
        started = time.perf_counter()
        same = {frozenset(g.tolist()) for g in stored_groups(store)} == {frozenset(g.tolist()) for g in store_groups(store, default_rules(store))}
        row["whole_dedupe_check_s"] = round(time.perf_counter() - started, 1)
        row["stored_equal_whole"] = same
    row["load_end"] = os.getloadavg()[0]
    row["cpu"] = f"{os.cpu_count()} x {_cpu_model()}"
    print(json.dumps(row))
    with open(out / "incremental.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


def ingest_cost(args) -> None:
    """Ingest covers/s with the default features, with and without keypoints: one run each, fresh stores,
    the same --originals covers (per genre share) of covers5."""
    import shutil
    import tempfile

    from coversearch.features.registry import DEFAULT_FEATURES
    from coversearch.ingest.pipeline import ingest
    from coversearch.ingest.readers import read_source
    from coversearch.store import Store

    names = DEFAULT_FEATURES.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "covers"
        for genre in sorted(p.name for p in COVERS5.iterdir()):
            (folder / genre).mkdir(parents=True)
            for path in sorted((COVERS5 / genre).iterdir())[: args.originals // 5]:
                (folder / genre / path.name).symlink_to(path)
        for label, chosen in (("without keypoints", [n for n in names if n != "keypoints"]), ("with keypoints", names)):
            extractors = [get_extractor(n, vgg16_weights=str(args.vgg16_weights)) for n in chosen]
            db = Path(tmp) / f"{len(chosen)}.duckdb"
            load = os.getloadavg()[0]
            with Store.open(db) as store:
                summary = ingest(store, read_source(folder), extractors)
            rows.append({"features": ",".join(chosen), "run": label, "covers": summary.counts.albums, "seconds": summary.to_dict()["seconds"],
                         "covers_per_s": summary.to_dict()["images_per_second"], "store_mib": round(db.stat().st_size / 2**20, 1),
                         "load": round(load, 1)})
            log(json.dumps(rows[-1]))
            db.unlink()
    print(json.dumps(rows))


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["copies", "twins", "quality", "scale", "scale-one", "split", "incremental", "ingest-cost", "rebuild"])
    parser.add_argument("--groups", help="split: a `coversearch dedupe --json` output (the default rule's groups)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--vgg16-weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--originals", type=int, default=200)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--features", default="phash,vgg16", help="scale: features to dedupe")
    parser.add_argument("--feature", help=argparse.SUPPRESS)  # scale-one
    parser.add_argument("--n", type=int, help="rebuild: synthetic albums")  # and scale-one
    parser.add_argument("--kind", help="scale: index kind instead of the default per feature")
    parser.add_argument("--params", help="scale: the --kind's parameters as JSON")
    parser.add_argument("--timeout", type=int, default=3600, help="scale: seconds per run")
    parser.add_argument("--readme", action="store_true", help="write the tables into benchmarks/README.md")
    parser.add_argument("--new", type=int, default=30, help="incremental: covers placed one at a time")
    parser.add_argument("--no-text", action="store_true", help="copies: do not read the copies' text (the text veto then has none)")
    parser.add_argument("--remove", type=int, default=1000, help="incremental: albums removed at once")
    args = parser.parse_args()
    {"copies": make_copies, "twins": twins, "quality": quality, "scale": scale, "scale-one": scale_one,
     "split": split_leaks, "incremental": incremental, "ingest-cost": ingest_cost, "rebuild": rebuild_one}[args.stage](args)


if __name__ == "__main__":
    main()
