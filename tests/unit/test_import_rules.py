"""agora.core decides and never acts: it imports only pure standard-library modules and
itself, never reads the clock, global randomness, files or the network."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "agora" / "core"

PURE_STDLIB = {
    "__future__",
    "abc",
    "base64",
    "bisect",
    "collections",
    "collections.abc",
    "copy",
    "dataclasses",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "json",
    "math",
    "operator",
    "random",  # only for the `random.Random` type of an injected, seeded generator
    "re",
    "statistics",
    "string",
    "types",
    "typing",
    "uuid",  # only `uuid.UUID`: ids come from the injected generator
}

# Module-level functions that read the clock, the OS or global random state.
FORBIDDEN_CALLS = {
    ("random", name)
    for name in (
        "random",
        "randint",
        "randrange",
        "choice",
        "choices",
        "shuffle",
        "sample",
        "uniform",
        "getrandbits",
        "seed",
        "gauss",
    )
} | {("uuid", "uuid1"), ("uuid", "uuid4")}
FORBIDDEN_BUILTINS = {"open", "print", "input", "exec", "eval", "__import__"}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("agora.core")  # relative imports stay inside the package
            elif node.module:
                names.append(node.module)
    return names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_only_pure_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for name in imported_names(tree):
        allowed = name == "agora.core" or name.startswith("agora.core.") or name in PURE_STDLIB
        assert allowed, f"{path.relative_to(ROOT)} imports {name!r}: agora.core must stay pure"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_calls_no_clock_io_or_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        if isinstance(func, ast.Name):
            assert func.id not in FORBIDDEN_BUILTINS, f"{where} calls {func.id}()"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            pair = (func.value.id, func.attr)
            assert pair not in FORBIDDEN_CALLS, f"{where} calls {pair[0]}.{pair[1]}()"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself must fail on impure code (a test that cannot fail proves nothing)."""
    tree = ast.parse("import os\nimport random\nrandom.shuffle([])\nprint('x')\n")
    assert "os" in imported_names(tree) and "os" not in PURE_STDLIB
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    flagged = [
        c
        for c in calls
        if (isinstance(c.func, ast.Name) and c.func.id in FORBIDDEN_BUILTINS)
        or (
            isinstance(c.func, ast.Attribute)
            and isinstance(c.func.value, ast.Name)
            and (c.func.value.id, c.func.attr) in FORBIDDEN_CALLS
        )
    ]
    assert len(flagged) == 2
