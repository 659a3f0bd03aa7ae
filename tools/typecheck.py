"""mypy over the installed layout: `tribunal.consumers.*` from consumers/, and so on.

The design card's top-level folders are mapped into the `tribunal` package by pyproject.toml's
`package-dir` (no symlinks). Python imports follow that mapping through the install, but mypy
names a file by the folders above it, so `consumers/worker.py` would be `consumers.worker` to
it. This script hands mypy every file with the module name it has when installed, reading the
mapping from pyproject.toml, so mypy checks exactly what Python imports. Usage (the Makefile's
`typecheck`): python tools/typecheck.py [extra mypy options]; exit status as mypy's.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

REPO = Path(__file__).resolve().parents[1]


def sources() -> list[BuildSource]:
    """Every module of the package (by its installed name) and every test module."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found: list[BuildSource] = []
    for package, folder in config["package-dir"].items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            if not (path.parent / "__init__.py").exists():
                continue  # not part of the package (e.g. bench/peers/quix runs in a venv of its own)
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts and parts[-1] == "__init__":
                parts.pop()
            found.append(BuildSource(str(path), ".".join([package, *parts])))
    for path in sorted((REPO / "tests").rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(BuildSource(str(path), ".".join(parts)))
    return found


def main() -> int:
    _, options = process_options(["--config-file", str(REPO / "pyproject.toml"), *sys.argv[1:], "tribunal"])
    try:
        result = build.build(sources(), options, fscache=FileSystemCache())
    except CompileError as exc:
        print("\n".join(exc.messages))
        return 2
    for message in result.errors:
        print(message)
    files = len({s.path for s in sources()})
    if result.errors:
        print(f"Found {len([m for m in result.errors if ': error:' in m])} errors (checked {files} source files)")
        return 1
    print(f"Success: no issues found in {files} source files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
