"""`coversearch download` against a real HTTP server on 127.0.0.1 serving real covers.

No HTTP mocking: every test goes through sockets to ``tests/httpserver.py``, which can also
misbehave on purpose (404, 5xx then 200, 429 + Retry-After, slow, truncated, oversized, HTML).
"""

from __future__ import annotations

import email.utils
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_cli
from httpserver import Reply, TestServer
from typer.testing import CliRunner

from coversearch.cli.main import app
from coversearch.download import (
    TEMP_SUFFIX,
    FetchConfig,
    download,
    is_valid_image,
    parse_retry_after,
    parse_size,
    plan_download,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COVERSEARCH_SHARED") or REPO.parent / "shared")
COVERS = SHARED / "data" / "covers5"
REAL_LINKS = SHARED / "data" / "bandcamp" / "dataset-links.tsv"
GENRES = ["Country", "Electronic", "HipHop", "Pop", "Rock"]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """A proxy from the environment must not capture requests meant for the local test server."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def covers_slice(per_genre: int) -> list[Path]:
    """The first ``per_genre`` real covers of each genre (sorted, so runs are repeatable)."""
    files = []
    for genre in GENRES:
        files += sorted((COVERS / genre).glob("*.jpg"))[:per_genre]
    assert len(files) == per_genre * len(GENRES)
    return files


def publish(files: list[Path], site: Path) -> list[str]:
    """Copy covers to the server's folder as ``covers/<Genre>/<file>``; returns their relpaths."""
    rels = []
    for f in files:
        rel = f"{f.parent.name}/{f.name}"
        (site / "covers" / f.parent.name).mkdir(parents=True, exist_ok=True)
        (site / "covers" / rel).write_bytes(f.read_bytes())
        rels.append(rel)
    return rels


def write_links(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A links file in the real format: ``url<TAB>genre/file.jpg``."""
    path.write_text("".join(f"{url}\t{rel}\n" for url, rel in rows))
    return path


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def invoke(*args: str):
    return run_cli("download", *args)


def jpeg_bytes() -> bytes:
    return covers_slice(1)[0].read_bytes()


def test_reproduces_covers_byte_for_byte_then_skips_them(tmp_path):
    files = covers_slice(3)
    site, out = tmp_path / "site", tmp_path / "out"
    with TestServer(root=site) as srv:
        rels = publish(files, site)
        links = write_links(tmp_path / "links.tsv", [(srv.url(f"/covers/{r}"), r) for r in rels])

        result = invoke(str(links), "--out", str(out), "--workers", "4", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["downloaded"], summary["present"], summary["failed"]) == (15, 0, 0)
        assert summary["bytes_downloaded"] == sum(f.stat().st_size for f in files)
        assert "downloaded 15" in result.stderr  # the human summary, beside the JSON
        for f, rel in zip(files, rels):
            assert (out / rel).read_bytes() == f.read_bytes()
        assert temp_files(out) == []
        assert (out / "failures.tsv").read_text() == "line\turl\tpath\treason\tdetail\n"
        requests_after_first_run = sum(srv.hits.values())
        assert requests_after_first_run == 15

        # A rerun (here through the library) verifies and skips everything: no request at all.
        again = download(links, out, FetchConfig(retries=0), workers=4)
        assert (again.downloaded, again.present, again.failed) == (0, 15, 0)
        assert sum(srv.hits.values()) == requests_after_first_run
        assert [(f.relpath, f.genre, f.url) for f in again.files] == [
            (r, r.split("/")[0], srv.url(f"/covers/{r}")) for r in rels
        ]


def test_http_failure_modes(tmp_path):
    """Each misbehaviour ends in the right outcome, with the right number of attempts."""
    good = jpeg_bytes()
    site, out = tmp_path / "site", tmp_path / "out"
    big = b"\xff" * 65536
    with TestServer(root=site) as srv:
        publish(covers_slice(1)[:1], site)
        ok_rel = f"{GENRES[0]}/{covers_slice(1)[0].name}"
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        rows = [
            (srv.url(f"/covers/{ok_rel}"), "g/ok.jpg"),  # 1
            (srv.url("/missing.jpg"), "g/missing.jpg"),  # 2: 404, not retried
            (srv.route("/flaky.jpg", Reply(500, b"oops", "text/plain"), Reply(body=good)), "g/flaky.jpg"),  # 3
            (srv.route("/busy.jpg", Reply(429, headers={"Retry-After": "1"}), Reply(body=good)), "g/busy.jpg"),  # 4
            (srv.route("/capped.jpg", Reply(503, headers={"Retry-After": "3600"}), Reply(body=good)), "g/capped.jpg"),
            (srv.route("/slow.jpg", Reply(body=good, delay=3)), "g/slow.jpg"),  # 6: beyond --timeout
            (srv.route("/short.jpg", Reply(body=good[: len(good) // 2], length=len(good))), "g/short.jpg"),  # 7
            (srv.route("/cut.jpg", Reply(body=good[: len(good) // 2])), "g/cut.jpg"),  # 8: a cut JPEG, served whole
            (srv.route("/big.jpg", Reply(body=big, repeat=1024)), "g/big.jpg"),  # 9: 64 MB, Content-Length
            (srv.route("/endless.jpg", Reply(body=big, repeat=1024, omit_length=True)), "g/endless.jpg"),  # 10
            (srv.route("/page.jpg", Reply(body=b"<html><body>Error</body></html>", content_type="text/html")),
             "g/page.jpg"),  # 11: an error page served with 200
            (srv.route("/redirect.jpg", Reply(302, headers={"Location": "file:///etc/passwd"})), "g/redirect.jpg"),
            (f"http://127.0.0.1:{closed_port}/x.jpg", "g/refused.jpg"),  # 13
        ]
        links = write_links(tmp_path / "links.tsv", rows)
        config = FetchConfig(timeout=0.5, retries=2, backoff=0.01, retry_after_cap=1.5, max_bytes=200_000)
        started = time.monotonic()
        summary = download(links, out, config, workers=13)
        elapsed = time.monotonic() - started

        outcome = {f.relpath: f.reason for f in summary.failures}
        assert outcome == {
            "g/missing.jpg": "http-404",
            "g/slow.jpg": "timeout",
            "g/short.jpg": "truncated",
            "g/cut.jpg": "bad-image",
            "g/big.jpg": "too-large",
            "g/endless.jpg": "too-large",
            "g/page.jpg": "not-image",
            "g/redirect.jpg": "bad-url",
            "g/refused.jpg": "connection-error",
        }
        assert {f.relpath for f in summary.files} == {"g/ok.jpg", "g/flaky.jpg", "g/busy.jpg", "g/capped.jpg"}
        for rel in ("g/flaky.jpg", "g/busy.jpg", "g/capped.jpg"):
            assert (out / rel).read_bytes() == good

        # Retried exactly what may succeed later; never a 404, a bad image or an oversized body.
        assert srv.hits["/missing.jpg"] == 1 and srv.hits["/cut.jpg"] == 1 and srv.hits["/page.jpg"] == 1
        assert srv.hits["/big.jpg"] == 1 and srv.hits["/endless.jpg"] == 1 and srv.hits["/redirect.jpg"] == 1
        assert srv.hits["/flaky.jpg"] == 2
        # 1 + 2 retries, counted by the fetcher itself: under load an attempt can time out before
        # the server's handler sees it, so the server's count may be lower, never higher.
        details = {f.relpath: f.detail for f in summary.failures}
        for rel, path in (("g/slow.jpg", "/slow.jpg"), ("g/short.jpg", "/short.jpg")):
            assert details[rel].endswith("(after 3 attempts)"), details[rel]
            assert 1 <= srv.hits[path] <= 3
        busy = srv.requests_to("/busy.jpg")
        assert busy[1].at - busy[0].at >= 0.9  # Retry-After: 1 honoured (backoff alone is 0.01 s)
        capped = srv.requests_to("/capped.jpg")
        assert 1.4 <= capped[1].at - capped[0].at < 5  # Retry-After: 3600 capped at 1.5 s
        assert elapsed < 20

        # Oversized bodies: refused on Content-Length / cut off mid-stream, not read to the end.
        for path in ("/big.jpg", "/endless.jpg"):
            record = srv.requests_to(path)[0]
            assert record.done.wait(10)
            assert not record.completed and record.sent < 32 * 2**20

        # Nothing but complete images under final names, no temporary files, failures.tsv by line.
        assert sorted(p.name for p in (out / "g").iterdir()) == ["busy.jpg", "capped.jpg", "flaky.jpg", "ok.jpg"]
        assert temp_files(out) == []
        rows_tsv = [line.split("\t") for line in (out / "failures.tsv").read_text().splitlines()]
        assert rows_tsv[0] == ["line", "url", "path", "reason", "detail"]
        assert [(int(r[0]), r[2], r[3]) for r in rows_tsv[1:]] == [
            (2, "g/missing.jpg", "http-404"), (6, "g/slow.jpg", "timeout"), (7, "g/short.jpg", "truncated"),
            (8, "g/cut.jpg", "bad-image"), (9, "g/big.jpg", "too-large"), (10, "g/endless.jpg", "too-large"),
            (11, "g/page.jpg", "not-image"), (12, "g/redirect.jpg", "bad-url"), (13, "g/refused.jpg", "connection-error"),
        ]


def test_refusals_end_to_end_and_failures_file_rewritten(tmp_path):
    """Unsafe lines never reach the network or the disk; failures.tsv always reflects the last run."""
    site, out, outside = tmp_path / "site", tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "evil").symlink_to(outside, target_is_directory=True)  # a symlink trick inside --out
    with TestServer(root=site) as srv:
        rel = publish(covers_slice(1)[:1], site)[0]
        good = srv.url(f"/covers/{rel}")
        rows = [
            ("file:///etc/passwd", "g/a.jpg"),  # 1
            ("ftp://127.0.0.1/a.jpg", "g/a.jpg"),  # 2
            ("javascript:alert(1)", "g/a.jpg"),  # 3
            (srv.url("/t1.jpg"), "../x.jpg"),  # 4
            (srv.url("/t2.jpg"), "/etc/x.jpg"),  # 5
            (srv.url("/t3.jpg"), "genre/../../x.jpg"),  # 6
            (srv.url("/t4.jpg"), "evil/x.jpg"),  # 7: resolves outside --out
            (good, rel),  # 8
            (srv.url("/t5.jpg"), rel),  # 9: same path as line 8
        ]
        links = write_links(tmp_path / "links.tsv", rows)
        result = invoke(str(links), "--out", str(out), "--json", "--retries", "0")
        assert result.exit_code == 1
        summary = json.loads(result.stdout)
        assert (summary["downloaded"], summary["malformed"]) == (1, 7)
        assert summary["failures_by_reason"] == {"malformed": 7, "duplicate-path": 1}
        assert [f["line"] for f in summary["failures"]] == [1, 2, 3, 4, 5, 6, 7, 9]
        assert "unsupported URL scheme 'javascript'" in summary["failures"][2]["detail"]
        assert "outside the output folder" in summary["failures"][6]["detail"]
        assert "malformed: 7" in result.stderr
        assert list(srv.hits) == [f"/covers/{rel}"]  # refused lines caused no request
        assert list(outside.iterdir()) == [] and not (tmp_path / "x.jpg").exists()
        assert len((out / "failures.tsv").read_text().splitlines()) == 1 + 8

        write_links(links, [(good, rel)])
        result = invoke(str(links), "--out", str(out), "--quiet")
        assert result.exit_code == 0 and result.output == ""
        assert (out / "failures.tsv").read_text().splitlines() == ["line\turl\tpath\treason\tdetail"]


def test_rerun_replaces_invalid_file_and_removes_stale_temporaries(tmp_path):
    site, out = tmp_path / "site", tmp_path / "out"
    files = covers_slice(1)[:2]
    with TestServer(root=site) as srv:
        rels = publish(files, site)
        links = write_links(tmp_path / "links.tsv", [(srv.url(f"/covers/{r}"), r) for r in rels])
        (out / rels[0]).parent.mkdir(parents=True)
        (out / rels[0]).write_bytes(files[0].read_bytes()[:500])  # present but truncated
        (out / rels[1]).parent.mkdir(parents=True, exist_ok=True)
        (out / rels[1]).write_bytes(files[1].read_bytes())  # present and valid
        stale = out / rels[0].split("/")[0] / f".a.jpg.x1y2{TEMP_SUFFIX}"
        stale.write_bytes(b"partial")
        keep = out / rels[0].split("/")[0] / ".keep"  # not ours: left alone
        keep.write_bytes(b"")

        summary = download(links, out, FetchConfig(retries=0))
        assert (summary.downloaded, summary.present, summary.stale_removed) == (1, 1, 1)
        assert srv.hits == {f"/covers/{rels[0]}": 1}
        assert (out / rels[0]).read_bytes() == files[0].read_bytes()
        assert not stale.exists() and keep.exists()


def test_interrupted_download_resumes(tmp_path):
    """SIGKILL a real `python -m coversearch.cli.main download` mid-transfer, then resume."""
    files = covers_slice(2)[:6]
    out = tmp_path / "out"
    with TestServer() as srv:
        gate = threading.Event()
        rows = []
        for i, f in enumerate(files):
            body = f.read_bytes()
            # Lines 1-3 are served at once; 4-6 send half their body, then stall until `gate` opens.
            reply = Reply(body=body, chunk_size=1024) if i < 3 else Reply(
                body=body, chunk_size=1024, hold=gate, hold_after=len(body) // 2)
            rows.append((srv.route(f"/{i}.jpg", reply), f"{f.parent.name}/{f.name}"))
        links = write_links(tmp_path / "links.tsv", rows)

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "coversearch.cli.main", "download", str(links), "--out", str(out),
               "--workers", "2", "--timeout", "30", "--retries", "0", "--quiet"]
        log = (tmp_path / "child.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:  # wait for: lines 1-3 complete, lines 4-5 in flight (2 workers)
                finals = [out / rel for _, rel in rows if (out / rel).exists()]
                if len(finals) == 3 and len(temp_files(out)) == 2:
                    break
                assert proc.poll() is None, (tmp_path / "child.log").read_text()
                assert time.monotonic() < deadline, "download never reached the expected state"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            log.close()
        assert proc.returncode == -signal.SIGKILL

        # What the killed run left: 3 complete files under their final names, 2 temporary files.
        assert [p.exists() for p in (out / rel for _, rel in rows)] == [True, True, True, False, False, False]
        assert len(temp_files(out)) == 2
        gate.set()

        result = invoke(str(links), "--out", str(out), "--json", "--timeout", "10")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["present"], summary["downloaded"], summary["stale_temp_removed"]) == (3, 3, 2)
        assert temp_files(out) == []
        for f, (_, rel) in zip(files, rows):
            assert (out / rel).read_bytes() == f.read_bytes()
        assert [srv.hits[f"/{i}.jpg"] for i in range(6)] == [1, 1, 1, 2, 2, 1]


def test_dry_run_on_real_links_file_without_network(tmp_path, monkeypatch):
    """The published 10,000-line file: 10 genres x 1,000, nothing malformed, no socket opened."""

    def no_network(*args, **kwargs):
        raise AssertionError("dry run tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    out = tmp_path / "data" / "bandcamp"

    result = invoke(str(REAL_LINKS), "--out", str(out), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["total"] == 10_000
    assert len(plan["genres"]) == 10 and set(plan["genres"].values()) == {1000}
    assert plan["malformed"] == [] and plan["duplicate_urls"] == [] and plan["duplicate_paths"] == []

    text = invoke(str(REAL_LINKS), "--out", str(out), "--dry-run")
    assert text.exit_code == 0
    assert "10000" in text.stdout and "hiphop_rap" in text.stdout and "malformed lines: 0" in text.stdout
    assert not out.exists()  # a dry run creates nothing


def test_dry_run_reports_duplicates_and_malformed_lines(tmp_path):
    links = tmp_path / "links.tsv"
    links.write_text(
        "# header comment\n"
        "http://h.example/1.jpg\trock/a.jpg\n"  # 2
        "http://h.example/1.jpg\tpop/b.jpg\n"  # 3: same URL as 2
        "http://h.example/3.jpg\trock/a.jpg\n"  # 4: same path as 2
        "http://h.example/4.jpg\n"  # 5: one field
        "ftp://h.example/5.jpg\tpop/c.jpg\n"  # 6
    )
    plan = plan_download(links)
    assert [e.line_no for e in plan.entries] == [2, 3]
    assert plan.genres == {"pop": 1, "rock": 1}

    result = invoke(str(links), "--out", str(tmp_path / "out"), "--dry-run", "--json")
    data = json.loads(result.stdout)
    assert data["duplicate_urls"] == [{"url": "http://h.example/1.jpg", "lines": [2, 3]}]
    assert data["duplicate_paths"] == [{"path": "rock/a.jpg", "lines": [2, 4]}]
    assert [m["line"] for m in data["malformed"]] == [5, 6]

    text = invoke(str(links), "--out", str(tmp_path / "out"), "--dry-run").stdout
    assert "lines 2, 4: rock/a.jpg" in text and "line 6: bad URL" in text and "malformed lines: 2" in text


def test_user_errors_are_one_line(tmp_path):
    result = invoke(str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"error: links file not found: {tmp_path / 'missing.tsv'}"]
    assert not (tmp_path / "out").exists()

    links = write_links(tmp_path / "links.tsv", [("http://127.0.0.1:9/a.jpg", "g/a.jpg")])
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for extra in ([], ["--dry-run"]):
        result = invoke(str(links), "--out", str(a_file), *extra)
        assert result.exit_code == 1
        assert result.stderr.strip().splitlines() == [f"error: --out {a_file} is an existing file, not a folder"]

    result = invoke(str(links), "--out", str(tmp_path / "o"), "--max-bytes", "lots")
    assert result.exit_code != 0 and "not a size" in result.output


def test_retry_after_and_size_parsing():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    in_30s = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(in_30s, now=now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now=now) == 0.0
    assert FetchConfig(retry_after_cap=60).delay(1, 3600) == 60
    assert [FetchConfig(backoff=1, backoff_cap=5).delay(n, None) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert parse_size("20MB") == 20_000_000 and parse_size("512KiB") == 524_288 and parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("-1")


def test_image_check_rejects_html_and_truncation(tmp_path):
    good = jpeg_bytes()
    cases = {"ok.jpg": good, "html.jpg": b"<!doctype html><title>404</title>", "cut.jpg": good[: len(good) // 2]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [is_valid_image(tmp_path / n) for n in cases] == [True, False, False]


def test_download_then_ingest_with_the_links_genres_and_urls(tmp_path):
    files = covers_slice(2)
    site, out, db = tmp_path / "site", tmp_path / "out", tmp_path / "store.duckdb"
    with TestServer(root=site) as srv:
        rels = publish(files, site)
        rows = [(srv.url(f"/covers/{r}"), r) for r in rels] + [(srv.url("/missing.jpg"), "Rock/missing.jpg")]
        links = write_links(tmp_path / "links.tsv", rows)
        result = CliRunner().invoke(
            app,
            ["--db", str(db), "download", str(links), "--out", str(out), "--retries", "0", "--quiet",
             "--ingest", "--features", "hsv"],
            catch_exceptions=False,
        )
    assert result.exit_code == 1  # one line failed (404); the rest is downloaded and ingested
    from coversearch.store import Store

    with Store.open(db, read_only=True) as store:
        stats = store.stats()
        assert stats["files"] == 10 and stats["errors"] == 0  # the 404 is in failures.tsv, not the store
        urls = {r[0]: r[1] for r in store.con.execute("SELECT f.path, a.source_url FROM album_files f JOIN albums a ON a.id = f.album_id").fetchall()}
        for rel in rels:
            assert str(out / rel) in urls
        genres = store.genres_by_album()
        assert {g for gs in genres.values() for g in gs} == {r.split("/")[0] for r in rels}
    assert "Rock/missing.jpg" in (out / "failures.tsv").read_text()
