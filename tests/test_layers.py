"""The import layers, enforced: every import of the package (function-level ones included) points
down or sideways within its layer, and neither the packages nor the modules import in a cycle.

leaves (errors, events, atomic, rng, ...) <- config <- models, embedding, data, ... <- runs <- generate
<- train <- toy <- api <- cli, webui. The test helpers (tiny models, the shapes dataset) live under
tests/ and the package never imports them."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tistudio"
TESTS = Path(__file__).resolve().parent

RANKS = {
    "errors": 0, "events": 0, "atomic": 0, "rng": 0, "memory": 0, "hashing": 0, "cfg_schedule": 0, "schedules": 0,
    "pickle_zip": 0,
    "config": 1,
    "models": 2, "embedding": 2, "data": 2, "preprocess": 2, "hypernetwork": 2,
    "runs": 3,
    "generate": 4,
    "train": 5,
    "toy": 6,
    "api": 7,
    "cli": 8, "webui": 8, "demo": 8,
    "__main__": 9,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> internal modules it imports, wherever the import statement sits."""
    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    out: dict[str, set[str]] = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from pkg import sub` depends on pkg.sub when that is a module, else on pkg.
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            targets |= {t for n in names if n.startswith("tistudio") and (t := resolve(n)) and t != mod}
        out[mod] = targets
    return out


def _unit(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "tistudio"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _modules()} - {"tistudio"}
    assert units <= set(RANKS), f"give these a layer in RANKS: {sorted(units - set(RANKS))}"


def test_imports_point_down():
    edges = _edges(_modules())
    upward = sorted({(_unit(m), _unit(t), m, t) for m, ts in edges.items() for t in ts
                     if _unit(m) != "tistudio" and _unit(t) != "tistudio"
                     and RANKS[_unit(t)] > RANKS[_unit(m)]})
    assert not upward, "imports that point up a layer:\n" + "\n".join(f"{m} -> {t}" for _, _, m, t in upward)


def test_no_import_cycles_between_packages_or_modules():
    edges = _edges(_modules())
    units: dict[str, set[str]] = {}
    for m, ts in edges.items():
        units.setdefault(_unit(m), set()).update(
            _unit(t) for t in ts if _unit(t) != _unit(m))
    assert not _cycles(units), f"package cycles: {_cycles(units)}"
    assert not _cycles(edges), f"module cycles: {_cycles(edges)}"


def test_the_checker_sees_function_level_imports(tmp_path):
    """The rule covers imports inside functions, the ones that hid the old cycles."""
    edges = _edges(_modules())
    assert "tistudio.train.run" in edges["tistudio.api"]  # api.train imports it inside the function


def test_the_package_never_imports_the_test_helpers():
    """Test helpers (tiny_models.py, shapes_dataset.py, run_config.py, ...) live under tests/, which
    an installed package does not have."""
    helpers = {p.stem for p in TESTS.glob("*.py")} | {"tests", "conftest"}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [f"{path.relative_to(SRC.parent)}: {n}" for n in names if n.split(".")[0] in helpers]
    assert not found, "the package imports test helpers:\n" + "\n".join(found)
