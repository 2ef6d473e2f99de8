"""Shape rules the code base keeps: no function outside the CLI's typer commands takes more than
eight parameters (group them into a dataclass or pydantic model instead)."""

from __future__ import annotations

import ast
from pathlib import Path

import trustray

MAX_PARAMS = 8
PACKAGE = Path(trustray.__file__).parent


def _is_command_decorator(node: ast.expr) -> bool:
    """``@app.command()`` / ``@data_app.command("x")``."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "command"


def _registered_commands(tree: ast.Module) -> set[str]:
    """Names registered as ``app.command("name")(function)``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_command_decorator(node.func) and node.args:
            if isinstance(node.args[0], ast.Name):
                names.add(node.args[0].id)
    return names


def _param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    return sum(1 for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls"))


def wide_functions(root: Path = PACKAGE) -> list[str]:
    """``path:line name (n)`` of every function with more than ``MAX_PARAMS`` parameters,
    typer commands under ``cli/`` excepted (their parameters are the command's options)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        in_cli = path.parent.name == "cli"
        commands = _registered_commands(tree) if in_cli else set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if in_cli and (node.name in commands or any(map(_is_command_decorator, node.decorator_list))):
                continue
            n = _param_count(node)
            if n > MAX_PARAMS:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({n})")
    return found


def test_no_function_takes_more_than_eight_parameters():
    assert wide_functions() == []


def test_the_check_sees_a_wide_function(tmp_path):
    (tmp_path / "mod.py").write_text("def f(a, b, c, d, e, f, g, h, i):\n    pass\n")
    assert wide_functions(tmp_path) == [f"{tmp_path.name}/mod.py:1 f (9)"]
