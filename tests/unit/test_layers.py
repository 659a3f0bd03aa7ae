"""The house rules, checked on the source: layers, no import circles, pure policy, small files.

Layers, lowest first: contracts (tribunal.schemas) < runtime (tribunal.core) < pure policy
(tribunal.consumers.policy) < compacted-topic tables (tribunal.consumers.tables) < tiers and
classifiers (the rest of tribunal.consumers) < producers < offline features < the laptop broker <
the demo < developer benches (tribunal.bench) < CLI. Every module imports only its own layer or
lower ones; imports inside functions and under TYPE_CHECKING count too (a lazy import is still a
dependency). No module names the generic top-level packages (`schemas`, `consumers`, ...), which a
service embedding Tribunal may have too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = (
    "tribunal.schemas",
    "tribunal.core",
    "tribunal.connect",
    "tribunal.consumers.policy",
    "tribunal.consumers.tables",
    "tribunal.consumers",
    "tribunal.producers",
    "tribunal.offline",
    "tribunal.localkafka",
    "tribunal.localregistry",
    "tribunal.demo",
    "tribunal.bench",
    "tribunal.cli",
)
FOLDERS = {
    "schemas": "tribunal.schemas",
    "consumers": "tribunal.consumers",
    "producers": "tribunal.producers",
    "bench": "tribunal.bench",
}
GENERIC = {"schemas", "consumers", "producers", "bench"}
# What "pure" means for tribunal.consumers.policy: no I/O, no event loop, no clock, no runtime.
IMPURE = ("aiokafka", "asyncio", "time", "socket", "httpx", "tribunal.core", "datetime")
MAX_LINES = 400


def layer_of(module: str) -> int | None:
    """The layer index of a `tribunal.*` module name (longest prefix wins); None for the rest."""
    if module == "tribunal":
        return len(LAYERS)  # the facade: re-exports from every layer, imported by none of them
    best: int | None = None
    for index, prefix in enumerate(LAYERS):
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(LAYERS[best])):
            best = index
    return best


def module_name(path: Path) -> str:
    """`consumers/worker.py` -> `tribunal.consumers.worker`; `tribunal/demo/run.py` -> `tribunal.demo.run`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    top = FOLDERS.get(parts[0])
    return ".".join([top, *parts[1:]]) if top else ".".join(parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import, top-level, in a function or under TYPE_CHECKING."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def product_sources() -> list[Path]:
    """Every module of the installed package: files in folders that are packages."""
    files = []
    for folder in [REPO / "tribunal", *(REPO / name for name in FOLDERS)]:
        for path in sorted(folder.rglob("*.py")):
            if (path.parent / "__init__.py").exists():
                files.append(path)
    return files


def violations(path: Path) -> list[str]:
    """Each import of `path` that reaches above its own layer or names a generic top-level package."""
    return violations_in(module_name(path), path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))


def violations_in(name: str, source: str, where: str) -> list[str]:
    own = layer_of(name)
    assert own is not None, f"{where} is in no layer"
    if own == len(LAYERS):
        return []  # the facade may name any layer
    found: dict[int, str] = {}  # one finding per import statement
    for line, module in imported_modules(ast.parse(source)):
        if module.split(".")[0] in GENERIC:
            found.setdefault(line, f"{where}:{line} imports generic top-level {module!r}")
            continue
        target = layer_of(module)
        if target is not None and target > own:
            found.setdefault(line, f"{where}:{line} ({LAYERS[own]}) imports {module} ({LAYERS[target]})")
    return list(found.values())


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (a `from package import name` counts the package)."""
    sources = {module_name(path): path for path in product_sources()}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        targets = {module for _, module in imported_modules(ast.parse(path.read_text(encoding="utf-8")))}
        graph[name] = {target for target in targets if target in sources and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_product_module_imports_only_its_layer_or_lower() -> None:
    sources = product_sources()
    assert len(sources) > 80, "the source walk found too few modules"
    problems = [problem for path in sources for problem in violations(path)]
    assert problems == []


def test_no_import_circle_not_even_under_type_checking() -> None:
    """A circle makes import order matter and hides which module a concept belongs to."""
    assert cycles(import_graph()) == []


def test_the_circle_check_itself_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_policy_is_pure() -> None:
    """tribunal.consumers.policy: no Kafka, no asyncio, no clock, no runtime."""
    problems = []
    for path in sorted((REPO / "consumers" / "policy").glob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if any(module == bad or module.startswith(bad + ".") for bad in IMPURE):
                problems.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert problems == []


def test_every_source_file_is_at_most_400_lines() -> None:
    long = []
    for folder in [REPO / "tribunal", REPO / "tests", *(REPO / name for name in FOLDERS)]:
        for path in sorted(folder.rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                long.append(f"{path.relative_to(REPO)}: {lines}")
    assert long == []


def test_the_package_list_names_every_package_folder() -> None:
    """pyproject.toml lists the packages by hand (the top-level folders are mapped into
    `tribunal.`): a package folder missing there would be left out of the wheel."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {module_name(path) for path in product_sources() if path.name == "__init__.py"}
    assert listed == on_disk
    for package, folder in config["package-dir"].items():
        assert (REPO / folder / "__init__.py").exists(), package


def test_no_symlink_in_the_tree() -> None:
    """Tools that do not follow links (and some platforms) would see another house."""
    links = [
        str(path.relative_to(REPO))
        for folder in [REPO / "tribunal", REPO / "tests", *(REPO / name for name in FOLDERS)]
        for path in folder.rglob("*")
        if path.is_symlink()
    ]
    assert links == []


def test_tests_never_import_the_generic_top_level_names() -> None:
    problems = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in GENERIC:
                problems.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert problems == []


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("tribunal.consumers.probe", "from tribunal.demo.run import run_demo\n", ["imports tribunal.demo.run"]),
        ("tribunal.consumers.probe", "from schemas.messages import Item\n", ["generic top-level"]),
        ("tribunal.consumers.probe", "def f():\n    from tribunal.cli.common import emit\n", ["tribunal.cli.common"]),
        ("tribunal.consumers.probe", "from tribunal.core.settings import Settings\nimport orjson\n", []),
        ("tribunal.consumers.policy.probe", "from tribunal.consumers.tables.rules import RuleTable\n", ["tables"]),
        ("tribunal.consumers.tables.probe", "from tribunal.consumers.worker import serve_worker\n", ["worker"]),
        ("tribunal.consumers.tables.probe", "from tribunal.consumers.policy.target import Rule\n", []),
        ("tribunal.core.probe", "if TYPE_CHECKING:\n    from tribunal.consumers.judge import x\n", ["judge"]),
    ],
)
def test_the_check_itself_catches_upward_and_generic_imports(name: str, source: str, expected: list[str]) -> None:
    found = violations_in(name, source, "probe.py")
    assert len(found) == len(expected)
    for problem, fragment in zip(found, expected, strict=True):
        assert fragment in problem


def test_the_public_api_is_lazy_and_complete() -> None:
    """`import tribunal` loads no tier; each name of `__all__` resolves to what its module defines."""
    import subprocess
    import sys

    probe = "import sys, tribunal; print(sorted(m for m in sys.modules if m.startswith('tribunal.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    import tribunal

    for name in tribunal.__all__:
        assert getattr(tribunal, name) is not None, name
    with pytest.raises(AttributeError):
        _ = tribunal.no_such_name


def test_the_cli_loads_the_benches_only_when_a_bench_runs() -> None:
    """Developer tooling stays out of every other command: `tribunal` imports no `tribunal.bench`."""
    import subprocess
    import sys

    probe = "import sys, tribunal.cli; print(sorted(m for m in sys.modules if m.startswith('tribunal.bench')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
