"""The `text` feature measured: what it reads, how fast, and what search and the metadata check do with it.

    python benchmarks/bench_text.py accuracy [--engine rapidocr|rapidocr-onnxruntime|tesseract] [--settings ...]
    python benchmarks/bench_text.py throughput [--covers 200]
    python benchmarks/bench_text.py parallel [--covers 60]
    python benchmarks/bench_text.py search-metadata [--covers 1000]

The ground truth is tests/data/text_ground_truth.tsv: 100 covers5 covers (20 per genre, chosen by
``ground_truth_sample``), with the words a person can read on each, typed by looking at it, and
the release's artist / title.

- ``accuracy``: OCR of the 100 covers with each setting; word recall (a ground-truth word of 2+
  characters found in the cover's compact text, i.e. spaces aside) and exact-word recall, word
  precision (an OCR word found in the ground truth's compact text), covers/s on one thread, and
  the errors of each setting by kind.  ``rapidocr`` is the engine the project ships; the others
  need their own environment (``rapidocr-onnxruntime`` pulls opencv-python, which must not share a
  venv with opencv-python-headless; ``tesseract`` needs Debian's tesseract-ocr and pytesseract):
  run this script from such a venv with PYTHONPATH at the repository.
- ``throughput``: the same N covers5 covers ingested (the real pipeline, fresh stores) with
  ``text`` alone, ``vgg16`` alone and both, covers/s each, in one run, with the threads that did
  the work (a thread sampler reads each thread's CPU time from /proc).
- ``parallel``: the same covers' OCR on 1 thread, 2 threads and 2 processes: whether the engines
  run in parallel in the ingest's decode threads (the GIL) or need processes.
- ``search-metadata``: a store with text for N covers5 covers (the 100 included); for 50 covers
  of the ground truth with legible words, one word they carry (the longest of their artist/title
  words that is printed), queried as is and with one letter changed: how often the cover is in the
  top 10.  Then the metadata check on the ground-truth covers with an artist: right metadata, and
  the same covers with artist/title shuffled among them: detection rate, false alarms, unknown.

Every figure is printed with the machine, the load average before and after, and the command.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from coversearch.features.text import compact, normalise  # noqa: E402

COVERS5 = Path(os.environ.get("COVERSEARCH_SHARED") or REPO.parent / "shared") / "data" / "covers5"
GROUND_TRUTH = REPO / "tests" / "data" / "text_ground_truth.tsv"
SEED = "text-ground-truth-31"


# -- the ground truth --------------------------------------------------------------------------------------
def ground_truth_sample(root: Path = COVERS5, per_genre: int = 20, seed: str = SEED) -> list[str]:
    """``per_genre`` covers of each genre ("Genre/file.jpg"), in a seeded random order, no bytes twice."""
    seen, out = set(), []
    for genre in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / genre).glob("*.jpg"))
        taken = 0
        for path in random.Random(f"{seed}-{genre}").sample(files, len(files)):
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha in seen:
                continue
            seen.add(sha)
            out.append(f"{genre}/{path.name}")
            taken += 1
            if taken == per_genre:
                break
    return out


def read_ground_truth() -> list[dict[str, str]]:
    lines = [line for line in GROUND_TRUTH.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f})"


def machine() -> str:
    from benchmarks.readme_blocks import machine_line

    return machine_line()


# -- accuracy ----------------------------------------------------------------------------------------------
def engine_reader(engine: str, setting: str):
    """A function RGB array -> [(text, score)] for one engine and setting."""
    if engine == "rapidocr":  # what the text feature runs (features/text.py), with the detector size varied
        from rapidocr import RapidOCR

        side, cls = setting.split("-")
        ocr = RapidOCR(params={"Global.log_level": "error", "Global.use_cls": cls == "cls",
                               "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                               "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                               "Det.limit_type": "min", "Det.limit_side_len": int(side)})

        def read(rgb):
            r = ocr(np.ascontiguousarray(rgb[:, :, ::-1]))
            return [(t, float(s)) for t, s in zip(r.txts or (), r.scores or ())]
        return read
    if engine == "rapidocr-onnxruntime":  # PP-OCRv4 (1.4.x); needs a venv of its own (opencv-python)
        from rapidocr_onnxruntime import RapidOCR

        side, cls = setting.split("-")
        ocr = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1, det_limit_side_len=int(side),
                       det_limit_type="min", use_cls=cls == "cls")

        def read(rgb):
            r, _ = ocr(np.ascontiguousarray(rgb[:, :, ::-1]))
            return [(t, float(s)) for _, t, s in (r or [])]
        return read
    if engine == "tesseract":  # Debian's tesseract-ocr 5 through pytesseract, sparse-text mode
        import pytesseract
        from PIL import Image

        os.environ["OMP_THREAD_LIMIT"] = "1"
        scale = float(setting)

        def read(rgb):
            img = Image.fromarray(rgb)
            if scale != 1:
                img = img.resize((int(img.width * scale), int(img.height * scale)), Image.LANCZOS)
            d = pytesseract.image_to_data(img, config="--psm 11", output_type=pytesseract.Output.DICT)
            return [(t, float(c) / 100) for t, c in zip(d["text"], d["conf"]) if t.strip() and float(c) >= 0]
        return read
    raise SystemExit(f"unknown engine {engine!r}")


def _similar(a: str, b: str) -> float:
    """1 - edit distance / the longer length."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cur[j] = min(prev[j - 1] + (ca != cb), prev[j] + 1, cur[j - 1] + 1)
        prev = cur
    return 1 - prev[-1] / max(len(a), len(b), 1)


def score_reads(truth: list[dict[str, str]], reads: dict[str, list[tuple[str, float]]], min_score: float = 0.5) -> dict:
    """Recall, exact recall, precision, and errors by kind, of OCR reads against the ground truth."""
    found = exact = total = right = read_words = 0
    kinds: Counter = Counter()
    for row in truth:
        words = [w for w in row["words"].split() if len(w) >= 2]
        plain = " ".join(normalise(t) for t, s in reads.get(row["path"], []) if s >= min_score)
        tokens = [t for t in plain.split() if len(t) >= 2]
        whole, truth_compact = plain.replace(" ", ""), "".join(row["words"].split())
        for w in words:
            total += 1
            if w in tokens:
                exact += 1
                found += 1
                kinds["read exactly"] += 1
            elif w in whole:
                found += 1
                kinds["read, joined to a neighbour (space lost)"] += 1
            elif any(_similar(w, t) >= 0.6 for t in tokens):
                kinds["misread (a letter or two wrong)"] += 1
            else:
                kinds["missed (not detected, or unreadable)"] += 1
        for t in tokens:
            read_words += 1
            if t in truth_compact:
                right += 1
            elif any(_similar(t, w) >= 0.6 for w in row["words"].split()):
                kinds["OCR word misread"] += 1
            else:
                kinds["OCR word not in the ground truth (fine print or noise)"] += 1
    return {"recall": found / max(total, 1), "exact_recall": exact / max(total, 1),
            "precision": right / max(read_words, 1), "words": total, "ocr_words": read_words, "kinds": dict(kinds)}


def run_accuracy(args) -> None:
    from PIL import Image

    truth = read_ground_truth()
    assert [r["path"] for r in truth] == ground_truth_sample(), "the ground truth no longer matches its sample"
    images = {r["path"]: np.asarray(Image.open(COVERS5 / r["path"]).convert("RGB")) for r in truth}
    print(f"# accuracy on {len(truth)} ground-truth covers; {machine()}")
    print("| engine | setting | recall | exact-word recall | precision | covers/s (1 thread) | load |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    for setting in args.settings.split(","):
        read = engine_reader(args.engine, setting)
        read(images[truth[0]["path"]])  # models loaded before the clock starts
        before = load_line()
        started = time.perf_counter()
        reads = {path: read(rgb) for path, rgb in images.items()}
        seconds = time.perf_counter() - started
        s = score_reads(truth, reads)
        results[setting] = {**s, "covers_per_second": len(images) / seconds, "load_before": before, "load_after": load_line(),
                            "reads": reads}
        print(f"| {args.engine} | {setting} | {s['recall']:.3f} | {s['exact_recall']:.3f} | {s['precision']:.3f} | "
              f"{len(images) / seconds:.2f} | {before} -> {load_line()} |", flush=True)
    for setting, s in results.items():
        print(f"\nerrors by kind, {args.engine} {setting} ({s['words']} ground-truth words, {s['ocr_words']} OCR words):")
        for kind, n in sorted(s["kinds"].items(), key=lambda kv: -kv[1]):
            print(f"  {kind}: {n}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))


# -- throughput ---------------------------------------------------------------------------------------------
def distinct_covers(n: int, seed: str = "text-throughput") -> list[Path]:
    """n covers5 files with distinct bytes, round-robin over the genres, in a seeded order."""
    by_genre = {}
    for genre in sorted(p.name for p in COVERS5.iterdir() if p.is_dir()):
        files = sorted((COVERS5 / genre).glob("*.jpg"))
        by_genre[genre] = random.Random(f"{seed}-{genre}").sample(files, len(files))
    seen, out = set(), []
    while len(out) < n:
        for genre in by_genre:
            path = by_genre[genre].pop()
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if sha not in seen and len(out) < n:
                seen.add(sha)
                out.append(path)
    return out


def link_tree(paths, dest: Path) -> Path:
    for path in paths:
        (dest / path.parent.name).mkdir(parents=True, exist_ok=True)
        target = dest / path.parent.name / path.name
        if not target.exists():
            target.symlink_to(path)
    return dest


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) so far: on a loaded machine, what the work cost."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process (Linux /proc), by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


class ThreadSampler:
    """Samples every thread's CPU time while a run goes on, so threads that end with the run
    (the decode pool) are counted too: how many threads did the work, and each one's share."""

    def __init__(self, every: float = 0.5):
        import threading

        self.every, self.seen, self._stop = every, {}, threading.Event()
        self.start_cpu = thread_cpu()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.seen.update(thread_cpu())

    def stop(self) -> list[float]:
        """CPU seconds each thread spent during the run, largest first."""
        self._stop.set()
        self._thread.join()
        self.seen.update(thread_cpu())
        return sorted((cpu - self.start_cpu.get(tid, 0.0) for tid, cpu in self.seen.items()), reverse=True)


def timed_ingest(root: Path, db: Path, features: str, engine: str = "local") -> tuple[float, dict]:
    """One real ingest (`coversearch ingest --engine ENGINE`'s library call) into a fresh store; Ray with
    1 worker x 1 CPU, as `--engine ray` gives by default."""
    from coversearch.ingest.ray_engine import RayOptions
    from coversearch.ingest.readers import read_source
    from coversearch.ingest.run import run_ingest

    weights = os.environ.get("COVERSEARCH_VGG16_WEIGHTS")
    ray = RayOptions(workers=1, cpus_per_worker=1).check() if engine == "ray" else None
    started = time.perf_counter()
    summary = run_ingest(db, read_source(root), features, weights, engine=engine, ray=ray)
    return time.perf_counter() - started, summary


def run_throughput(args) -> None:
    covers = distinct_covers(args.covers)
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        root = link_tree(covers, Path(tmp) / "covers")
        print(f"# throughput: {len(covers)} distinct covers5 covers, fresh store each; {machine()}")
        print("| features | engine | seconds | covers/s | CPU s per cover (this process) | 2 / CPU s per cover (bound on 2 free cores) "
              "| threads with >= 10% of the CPU (their CPU s) | load before -> after |")
        print("|---|---|---|---|---|---|---|---|")
        runs = [] if args.ray_only else [("text", "local"), ("vgg16", "local"), ("vgg16,text", "local")]
        runs += [("text", "ray"), ("vgg16", "ray")] if args.ray or args.ray_only else []
        if args.features:
            runs = [(f, e) for f, e in runs if f == args.features]
        for features, engine in runs:
            before, cpu, sampler = load_line(), cpu_seconds(), ThreadSampler()
            seconds, _ = timed_ingest(root, Path(tmp) / f"{features.replace(',', '+')}-{engine}.duckdb", features, engine)
            per_cover = (cpu_seconds() - cpu) / len(covers)
            threads = sampler.stop()
            busy = [t for t in threads if t >= 0.1 * sum(threads)]
            busy_cell = "-" if engine == "ray" else f"{len(busy)} ({', '.join(f'{t:.0f}' for t in busy)})"
            # Ray's work runs in its worker processes, which this process's CPU time does not count.
            cost = "-" if engine == "ray" else f"{per_cover:.3f}"
            free = "-" if engine == "ray" else f"{2 / per_cover:.1f}"
            print(f"| {features} | {engine} | {seconds:.1f} | {len(covers) / seconds:.2f} | {cost} | {free} | "
                  f"{busy_cell} | {before} -> {load_line()} |", flush=True)


# -- parallel OCR: threads against processes ------------------------------------------------------------------
def _ocr_all(paths: list[str]) -> int:
    """Read the covers with one single-threaded engine (as one ingest decode thread does); lines read."""
    from PIL import Image

    from coversearch.features.text import CoverText

    reader = CoverText()
    return sum(len(reader.read(np.asarray(Image.open(p).convert("RGB")))["lines"]) for p in paths)


def run_parallel(args) -> None:
    """The same covers read by 1 thread, 2 threads (one engine each, as the local ingest's decode
    pool runs them) and 2 processes, one after the other: if the engines released the GIL for all
    their work, 2 threads would be as fast as 2 processes."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    covers = [str(p) for p in distinct_covers(args.covers, seed="text-parallel")]
    halves = [covers[0::2], covers[1::2]]
    _ocr_all(covers[:2])  # onnxruntime sessions and the models' pages warm, in this process
    print(f"# parallel OCR: {len(covers)} covers; {machine()}")
    print("| how | seconds | covers/s | CPU s (all processes) | cores busy (CPU s / s) | load before -> after |")
    print("|---|---|---|---|---|---|")

    def cpu_all() -> float:
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    for how in ("1 thread", "2 threads", "2 processes", "1 thread"):
        before, cpu, started = load_line(), cpu_all(), time.perf_counter()
        if how == "1 thread":
            _ocr_all(covers)
        elif how == "2 threads":
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(_ocr_all, halves))
        else:
            with ProcessPoolExecutor(2) as pool:
                list(pool.map(_ocr_all, halves))
        seconds, used = time.perf_counter() - started, cpu_all() - cpu
        print(f"| {how} | {seconds:.1f} | {len(covers) / seconds:.2f} | {used:.1f} | {used / seconds:.2f} | "
              f"{before} -> {load_line()} |", flush=True)


# -- search and the metadata check ---------------------------------------------------------------------------
def typo(word: str, rng: random.Random) -> str:
    """The word with one letter (not the first) replaced by another."""
    i = rng.randrange(1, len(word))
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[i]]
    return word[:i] + rng.choice(letters) + word[i + 1:]


def query_word(row: dict[str, str]) -> str | None:
    """The longest word of the cover's artist and title (4+ letters) that is printed on it."""
    printed = set(row["words"].split())
    candidates = [w for w in normalise(f"{row['artist']} {row['title']}").split() if len(w) >= 4 and w in printed]
    return max(candidates, key=lambda w: (len(w), w)) if candidates else None


def derangement(n: int, rng: random.Random) -> list[int]:
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def run_search_metadata(args) -> None:
    from coversearch.query.text import CoverTexts, check_metadata
    from coversearch.store import Store

    truth = read_ground_truth()
    chosen = [COVERS5 / r["path"] for r in truth]
    have = {hashlib.sha256(p.read_bytes()).hexdigest() for p in chosen}
    others = [p for p in distinct_covers(args.covers + len(chosen)) if hashlib.sha256(p.read_bytes()).hexdigest() not in have]
    covers = chosen + others[: max(0, args.covers - len(chosen))]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-text-"))
    root = link_tree(covers, work / "covers")
    db = work / "text.duckdb"
    before = load_line()
    seconds, summary = timed_ingest(root, db, "text")
    print(f"# search and metadata check: a store of {len(covers)} covers5 covers with text "
          f"({summary['embeddings_added'].get('text', 0)} read now in {seconds:.0f} s, {before} -> {load_line()}); {machine()}")

    with Store.open(db, read_only=True) as store:
        texts = CoverTexts.from_store(store)
        album_of = {Path(p).name: a for p, a in store.known_files().items()}
    rng = random.Random(31)
    labelled = [r for r in truth if query_word(r)][:50]
    hits = {"as printed": 0, "one letter changed": 0}
    ranks = []
    timings = []
    for row in labelled:
        album = album_of[Path(row["path"]).name]
        word = query_word(row)
        for label, query in (("as printed", word), ("one letter changed", typo(word, rng))):
            started = time.perf_counter()
            found = [h.album_id for h in texts.search(query, k=10, min_score=0.0)]
            timings.append(time.perf_counter() - started)
            if album in found:
                hits[label] += 1
            if label == "as printed":
                ranks.append(found.index(album) + 1 if album in found else None)
    print(f"\nsearch: {len(labelled)} covers, one word each (the longest printed word of their artist/title)")
    print("| query | in the top 10 |\n|---|---|")
    for label, n in hits.items():
        print(f"| {label} | {n}/{len(labelled)} ({n / len(labelled):.0%}) |")
    print(f"median query time {1000 * float(np.median(timings)):.0f} ms over {len(texts)} covers with text")

    rows = [r for r in truth if r["artist"] or r["title"]]
    order = derangement(len(rows), random.Random(31))
    right = [(album_of[Path(r["path"]).name], r["artist"] or None, r["title"] or None, r["path"]) for r in rows]
    wrong = [(album_of[Path(r["path"]).name], rows[j]["artist"] or None, rows[j]["title"] or None, r["path"])
             for r, j in zip(rows, order)]
    print(f"\nmetadata check: {len(rows)} ground-truth covers with an artist or title; right metadata, then shuffled among them")
    print("| metadata | mismatch | unknown | match |\n|---|---|---|---|")
    for label, catalogue in (("right", right), ("shuffled (wrong)", wrong)):
        verdicts = Counter(v.verdict for v in check_metadata(texts, catalogue))
        print(f"| {label} | {verdicts['mismatch']} ({verdicts['mismatch'] / len(rows):.0%}) | {verdicts['unknown']} | "
              f"{verdicts['match']} |")
    print("(mismatch on shuffled = detection rate; mismatch on right = false alarms; unknown = no legible text)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accuracy")
    acc.add_argument("--engine", default="rapidocr", choices=["rapidocr", "rapidocr-onnxruntime", "tesseract"])
    acc.add_argument("--settings", default=None,
                     help="comma-separated: detector side and cls|nocls for the rapidocr engines (480-nocls), scale for tesseract (1,2)")
    acc.add_argument("--out", help="also write every read and figure as JSON here")
    thr = sub.add_parser("throughput")
    thr.add_argument("--covers", type=int, default=200)
    thr.add_argument("--ray", action="store_true", help="also text and vgg16 on --engine ray (1 worker x 1 CPU)")
    thr.add_argument("--ray-only", action="store_true", help="only the --engine ray runs")
    thr.add_argument("--features", help="only the runs of these features (text, vgg16 or vgg16,text)")
    par = sub.add_parser("parallel")
    par.add_argument("--covers", type=int, default=60)
    sm = sub.add_parser("search-metadata")
    sm.add_argument("--covers", type=int, default=1000)
    sm.add_argument("--work", help="folder for the store (default: a new temporary folder, kept)")
    args = parser.parse_args()
    if args.command == "accuracy":
        if args.settings is None:
            args.settings = {"rapidocr": "320-nocls,480-nocls,640-nocls,736-nocls,736-cls",
                             "rapidocr-onnxruntime": "480-nocls,736-cls", "tesseract": "1,2"}[args.engine]
        run_accuracy(args)
    elif args.command == "throughput":
        run_throughput(args)
    elif args.command == "parallel":
        run_parallel(args)
    else:
        run_search_metadata(args)


if __name__ == "__main__":
    main()
