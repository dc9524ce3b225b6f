"""Removes from a built code directory the modules of the given packages that no code in it can
import (``make build``; run with the Function Compute runtime's interpreter).

What can be imported: every import statement, at any depth (inside functions and try blocks
too), of the handler files at the directory's root and of every module of ``secpref_guard``,
followed through the whole directory (``modulefinder`` reads the byte-code of each module); and
every module of a pruned package whose dotted name is a string in a module that is kept
(pycryptodome loads its compiled parts by name: ``load_pycryptodome_raw_lib("Crypto.Cipher.
_raw_aes", ...)``), until nothing more is added. Everything else of the pruned packages (the
``.py`` files and compiled extensions that nothing names) is deleted, and what was deleted is
printed. tests/test_build.py runs every handler and feature path from the result.

    python prune_build.py CODE_DIR PACKAGE [PACKAGE ...]
"""

from __future__ import annotations

import importlib.machinery
import modulefinder
import re
import sys
import warnings
from pathlib import Path

SUFFIXES = (*tuple(importlib.machinery.EXTENSION_SUFFIXES), ".py")


def module_name(code: Path, path: Path) -> str:
    relative = path.relative_to(code).as_posix()
    for suffix in SUFFIXES:
        if relative.endswith(suffix):
            relative = relative[: -len(suffix)]
            break
    return relative.replace("/", ".").removesuffix(".__init__")


def prune(code: Path, packages: list[str]) -> tuple[list[str], int]:
    """Delete what nothing can import; return the deleted modules' names and their size."""
    code = code.resolve()
    finder = modulefinder.ModuleFinder(path=[str(code), *sys.path[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in some dependencies' docstrings
        for entry in sorted(code.glob("*.py")):
            finder.run_script(str(entry))
        for module in sorted((code / "secpref_guard").rglob("*.py")):
            finder.import_hook(module_name(code, module))
    kept = {
        Path(m.__file__).resolve()
        for m in finder.modules.values()
        if m.__file__ and Path(m.__file__).resolve().is_relative_to(code)
    }
    candidates = {
        path.resolve()
        for package in packages
        for path in (code / package).rglob("*")
        if path.is_file() and path.name.endswith(SUFFIXES) and "__pycache__" not in path.parts
    }
    by_name = {module_name(code, path): path for path in candidates}
    named = re.compile(r"""["']({}(?:\.\w+)+)["']""".format("|".join(map(re.escape, packages))))
    todo = [path for path in kept if path.suffix == ".py"]
    while todo:
        source = todo.pop().read_text(encoding="utf-8", errors="replace")
        for name in named.findall(source):
            path = by_name.get(name)
            if path is not None and path not in kept:
                kept.add(path)
                if path.suffix == ".py":
                    todo.append(path)
    removed = sorted(candidates - kept)
    size = sum(path.stat().st_size for path in removed)
    for path in removed:
        path.unlink()
    return [module_name(code, path) for path in removed], size


def main() -> None:
    code, packages = Path(sys.argv[1]), sys.argv[2:]
    removed, size = prune(code, packages)
    print(
        f"pruned {len(removed)} modules of {', '.join(packages)} that nothing imports "
        f"({size / 1e6:.1f} MB), e.g. {', '.join(removed[:3])}"
    )


if __name__ == "__main__":
    main()
