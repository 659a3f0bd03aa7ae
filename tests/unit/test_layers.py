"""The layering rule, checked on the source: every module imports only its own layer or lower ones.

contracts (tribunal.schemas) < core runtime (tribunal.core) < tiers, policies and classifiers
(tribunal.consumers) < producers (tribunal.producers) < lab (tribunal.lab) < CLI (tribunal.cli).
Imports inside functions count too: a lazy import is still a dependency. And no module names the
old generic top-level packages (`schemas`, `consumers`, `producers`), which a service embedding
Tribunal may have too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = (
    "tribunal.schemas",
    "tribunal.core",
    "tribunal.consumers",
    "tribunal.producers",
    "tribunal.lab",
    "tribunal.cli",
)
FOLDERS = {"schemas": "tribunal.schemas", "consumers": "tribunal.consumers", "producers": "tribunal.producers"}
GENERIC = {"schemas", "consumers", "producers"}


def layer_of(module: str) -> int | None:
    """The layer index of a `tribunal.*` module name; None for third-party and the stdlib."""
    if module == "tribunal":
        return LAYERS.index("tribunal.core")
    for index, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return None


def module_name(path: Path) -> str:
    """`consumers/worker.py` -> `tribunal.consumers.worker`; `tribunal/lab/demo.py` -> `tribunal.lab.demo`."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    top = FOLDERS.get(parts[0])
    return ".".join([top, *parts[1:]]) if top else ".".join(parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every absolute import, top-level or inside a function."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def product_sources() -> list[Path]:
    folders = [REPO / "schemas", REPO / "consumers", REPO / "producers", REPO / "tribunal"]
    files = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            # tribunal/schemas etc. are links to the top-level folders: count each file once.
            if path.resolve() == path.absolute():
                files.append(path)
    return files


def violations(path: Path) -> list[str]:
    """Each import of `path` that reaches above its own layer or names a generic top-level package."""
    return violations_in(module_name(path), path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))


def violations_in(name: str, source: str, where: str) -> list[str]:
    own = layer_of(name)
    assert own is not None, f"{where} is in no layer"
    found: dict[int, str] = {}  # one finding per import statement
    for line, module in imported_modules(ast.parse(source)):
        if module.split(".")[0] in GENERIC:
            found.setdefault(line, f"{where}:{line} imports generic top-level {module!r}")
            continue
        target = layer_of(module)
        if target is not None and target > own:
            found.setdefault(line, f"{where}:{line} ({LAYERS[own]}) imports {module} ({LAYERS[target]})")
    return list(found.values())


def test_every_product_module_imports_only_its_layer_or_lower() -> None:
    sources = product_sources()
    assert len(sources) > 40, "the source walk found too few modules"
    problems = [problem for path in sources for problem in violations(path)]
    assert problems == []


def test_tests_never_import_the_generic_top_level_names() -> None:
    problems = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for line, module in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if module.split(".")[0] in GENERIC:
                problems.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert problems == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tribunal.lab.demo import run_demo\n", ["imports tribunal.lab.demo"]),
        ("from schemas.messages import Item\n", ["generic top-level"]),
        ("def f():\n    from tribunal.cli.common import emit\n", ["imports tribunal.cli.common"]),
        ("from tribunal.core.settings import Settings\nimport orjson\n", []),
    ],
)
def test_the_check_itself_catches_upward_and_generic_imports(source: str, expected: list[str]) -> None:
    found = violations_in("tribunal.consumers.probe", source, "consumers/probe.py")
    assert len(found) == len(expected)
    for problem, fragment in zip(found, expected, strict=True):
        assert fragment in problem
