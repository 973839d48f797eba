"""The links-file parser: real file, bad lines with line numbers, and unsafe paths/URLs refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coversearch.errors import CoverSearchError
from coversearch.sources.links import LinkEntry, LinkProblem, check_url, parse_links, safe_relpath

SHARED = Path(os.environ.get("COVERSEARCH_SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
REAL_LINKS = SHARED / "data" / "bandcamp" / "dataset-links.tsv"


def test_real_links_file_parses_completely():
    """All 10,000 lines of the published dataset are well formed: 10 genres x 1,000."""
    entries, problems = parse_links(REAL_LINKS)
    assert problems == []
    assert len(entries) == 10_000
    genres: dict[str, int] = {}
    for e in entries:
        genres[e.genre] = genres.get(e.genre, 0) + 1
    assert len(genres) == 10 and set(genres.values()) == {1000}
    first = entries[0]
    assert first.line_no == 1 and first.url.startswith("http://") and first.relpath.count("/") == 1
    assert len({e.relpath for e in entries}) == 10_000


def test_line_numbers_blank_comment_and_malformed_lines(tmp_path):
    links = tmp_path / "links.tsv"
    links.write_bytes(
        b"# comment line\n"  # 1: ignored
        b"http://h.example/a.jpg\trock/a.jpg\n"  # 2
        b"\n"  # 3: ignored
        b"   \t  \n"  # 4: whitespace only, ignored
        b"http://h.example/b.jpg rock/b.jpg\n"  # 5: space instead of tab
        b"http://h.example/c.jpg\trock/c.jpg\textra\n"  # 6: three fields
        b"\trock/d.jpg\n"  # 7: empty URL
        b"http://h.example/e.jpg\t\n"  # 8: empty path
        b"https://h.example/f.jpg\t./pop//f.jpg\r\n"  # 9: CRLF, normalised path
        b"http://h.example/\xff.jpg\tpop/g.jpg\n"  # 10: not UTF-8
        b"HTTPS://H.example:8443/h.jpg?x=1\tpop/h.jpg"  # 11: no final newline; scheme case-insensitive
    )
    entries, problems = parse_links(links)
    assert entries == [
        LinkEntry(2, "http://h.example/a.jpg", "rock/a.jpg"),
        LinkEntry(9, "https://h.example/f.jpg", "pop/f.jpg"),
        LinkEntry(11, "HTTPS://H.example:8443/h.jpg?x=1", "pop/h.jpg"),
    ]
    assert [p.line_no for p in problems] == [5, 6, 7, 8, 10]
    reasons = {p.line_no: p.reason for p in problems}
    assert "found 1" in reasons[5] and "found 3" in reasons[6]
    assert reasons[7] == "empty URL field" and reasons[8] == "empty path field"
    assert "UTF-8" in reasons[10]
    assert all(isinstance(p, LinkProblem) and p.line for p in problems)
    assert entries[1].genre == "pop"


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://h.example/x.jpg", "scheme 'ftp'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("data:image/png;base64,AAAA", "scheme 'data'"),
        ("h.example/x.jpg", "no scheme"),
        ("http:///x.jpg", "no host"),
        ("http://h.example:99999/x.jpg", "invalid URL"),
        ("http://h.example/x y.jpg", "whitespace"),
    ],
)
def test_bad_urls_are_refused(url, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_url(url)


@pytest.mark.parametrize(
    "relpath, fragment",
    [
        ("../x.jpg", r"'\.\.'"),
        ("/etc/x.jpg", "absolute"),
        ("genre/../../x.jpg", r"'\.\.'"),
        ("genre/..", r"'\.\.'"),
        ("genre\\x.jpg", "backslash"),
        ("genre/x\x00.jpg", "NUL"),
        ("genre/x\x1b.jpg", "control"),
        ("C:/x.jpg", "absolute"),
        ("", "empty"),
        ("x.jpg", "genre folder and a file name"),
        ("genre/", "genre folder and a file name"),
        ("genre/" + "a" * 256 + ".jpg", "longer than"),
    ],
)
def test_unsafe_paths_are_refused(relpath, fragment):
    with pytest.raises(ValueError, match=fragment):
        safe_relpath(relpath)


def test_safe_paths_are_normalised():
    assert safe_relpath("rock/a.jpg") == "rock/a.jpg"
    assert safe_relpath("./rock//sub/./a.jpg") == "rock/sub/a.jpg"
    assert safe_relpath("hip hop/..a.jpg") == "hip hop/..a.jpg"  # '..' inside a name is fine


def test_refusals_in_a_file_carry_line_numbers(tmp_path):
    lines = [
        "file:///etc/passwd\tx/a.jpg",
        "ftp://h.example/a.jpg\tx/a.jpg",
        "javascript:alert(1)\tx/a.jpg",
        "http://h.example/a.jpg\t../x.jpg",
        "http://h.example/a.jpg\t/etc/x.jpg",
        "http://h.example/a.jpg\tgenre/../../x.jpg",
        "http://h.example/ok.jpg\tgenre/ok.jpg",
    ]
    links = tmp_path / "links.tsv"
    links.write_text("\n".join(lines) + "\n")
    entries, problems = parse_links(links)
    assert [e.line_no for e in entries] == [7]
    assert [(p.line_no, p.reason.split(":")[0]) for p in problems] == [
        (1, "bad URL"), (2, "bad URL"), (3, "bad URL"),
        (4, "unsafe path"), (5, "unsafe path"), (6, "unsafe path"),
    ]


def test_missing_or_unreadable_file_is_a_user_error(tmp_path):
    with pytest.raises(CoverSearchError, match="not found"):
        parse_links(tmp_path / "nope.tsv")
    with pytest.raises(CoverSearchError, match="folder"):
        parse_links(tmp_path)
