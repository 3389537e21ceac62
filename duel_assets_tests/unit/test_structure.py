"""The package's shape, read statically from the source: the library imports no Dagster, no module
of duel_assets takes part in an import circle, and lib/ keeps few modules at its root."""
from __future__ import annotations

import ast
from pathlib import Path

import duel_assets

PACKAGE = Path(duel_assets.__file__).resolve().parent
LIB = PACKAGE / "lib"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str], name: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in the file ``name`` (default: its module name in the
    package), at any depth (inside functions too); relative imports resolved. ``from x import y``
    names the module ``x.y`` when that is a module, else ``x``."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base) for a in node.names]
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    mods = set(files)
    return {m: {d for _, d in imports(p, mods) if d in mods and d != m} for m, p in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_module_under_lib_imports_dagster():
    found = []
    for path in sorted(LIB.rglob("*.py")):
        for line, mod in imports(path, set()):
            top = mod.split(".")[0]
            if top == "dagster" or top.startswith("dagster_"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {mod}")
    assert not found, "\n".join(found)


def test_the_dagster_check_sees_every_kind_of_import(tmp_path):
    """The check above reads imports at any depth and in both spellings."""
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom dagster import asset\n\ndef f():\n    import dagster_duckdb.io as io\n"
                 "    from dagster._core import x\n    from .sibling import y\n")
    found = [m for _, m in imports(f, {"pkg.sub.sibling"}, "pkg.sub.m")]
    assert found == ["os", "dagster", "dagster_duckdb.io", "dagster._core", "pkg.sub.sibling"]


def test_no_import_circle_among_duel_assets_modules():
    found = circles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_circle_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_lib_keeps_at_most_ten_modules_at_its_root():
    root = sorted(p.name for p in LIB.glob("*.py"))
    assert len(root) <= 10, root
