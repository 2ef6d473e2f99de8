"""CLI plumbing shared by the command modules: error reporting, consoles."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


class UserError(Exception):
    """An error caused by the user's input; printed as one line, exit code 2."""


# Exceptions that carry an actionable message for the user. Kept as a tuple of classes
# resolved lazily so the CLI does not import torch or Ray just to start.
def _user_error_types() -> tuple[type[BaseException], ...]:
    from pydantic import ValidationError

    from trustray.data import DataError
    from trustray.registry import UnknownNameError

    types: list[type[BaseException]] = [UserError, DataError, UnknownNameError, ValidationError, ValueError, FileNotFoundError]
    from trustray.models import ModelError
    from trustray.sweep import SweepError

    types += [ModelError, SweepError]
    return tuple(types)


def _click_exception_types() -> tuple[type[BaseException], ...]:
    # typer vendors its own click; accept both so usage errors print as usage errors.
    types: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException

        types.append(ClickException)
    except ImportError:
        pass
    try:
        import click

        types.append(click.ClickException)
    except ImportError:
        pass
    return tuple(types)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (file descriptor 1, so libraries' loggers bound to it
    too) to stderr for the block: a command whose stdout is its answer keeps it clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run(app: typer.Typer) -> None:
    try:
        rc = app(standalone_mode=False)
        # without standalone mode click returns (not raises) the code of a typer.Exit
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - classify below
        if isinstance(e, _click_exception_types()):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, _user_error_types()):
            msg = str(e).strip().replace("\n", " ")
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
            sys.exit(2)
        raise
