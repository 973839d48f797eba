"""The code's shape, checked from its source: no import cycles, SQL only in the store, and the
lazily imported extension points really are lazy."""

from __future__ import annotations

import ast
import re

from conftest import REPO

PACKAGE = REPO / "coversearch"


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _imports(name: str, tree: ast.Module, modules) -> set[str]:
    """Every coversearch module ``name`` imports, deferred (inside functions) ones included; imports
    under ``if TYPE_CHECKING`` are not run and do not count."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    deps = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            deps.update(subs)
            if not (len(subs) == len(node.names) and name.startswith(node.module + ".")):
                deps.add(node.module)  # a package's own submodules may be imported from it
    return {d for d in deps if d in modules and d != name and not name.startswith(d + ".")}


def test_no_import_cycles_even_through_deferred_imports():
    modules = _modules()
    graph = {name: _imports(name, tree, modules) for name, tree in modules.items()}
    # Depth-first search for a back edge; report the cycle it closes.
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)


def test_only_the_store_runs_sql():
    outside = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "store":  # the store and its migrations
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.execute\(|\.sql\(|\bSELECT\b.*\bFROM\b", line):
                outside.append(f"{rel}:{lineno}: {line.strip()}")
    assert outside == []


# The layers, top to bottom (the developers' guide): a module may import its own package, the
# packages below it, and the base modules (coversearch/*.py: errors, fsutil, config, metrics ...).
LAYERS = [
    {"cli"},
    {"web", "report", "bench"},
    {"query", "classify", "ingest", "dedupe", "download", "layout", "sources"},
    {"index"},
    {"features", "imaging"},
    {"store"},
]


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def test_the_store_imports_nothing_above_it():
    """Not even for type hints: what the store writes it names by shape (store/writer.py)."""
    above = set().union(*LAYERS[:-1])
    found = []
    for name, tree in _modules().items():
        if _package(name) != "store":
            continue
        for node in ast.walk(tree):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [f"{name} imports {t}" for t in targets if t.startswith("coversearch.") and _package(t) in above]
    assert found == []


# What decodes an image: the decoder's module and the libraries' own readers.
DECODERS = ("coversearch.imaging.images", "PIL.Image.open", "cv2.imread", "cv2.imdecode", "decode_image", "read_bytes")


def test_nothing_under_index_decodes_images():
    found = []
    for path in sorted((PACKAGE / "index").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(REPO)}: {needle}" for needle in DECODERS if needle in text]
        tree = ast.parse(text)
        found += [f"{path.relative_to(REPO)}: imports {node.module}" for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module in ("PIL", "cv2", "coversearch.imaging.images")]
    assert found == []
