"""The ``trustray`` command. Each sub-module registers its commands; none holds logic."""

from __future__ import annotations

import typer

from trustray.cli import common

app = typer.Typer(
    name="trustray",
    help="Measure how much trust an LLM loses (or gains) when it is compressed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from trustray.cli import compress, data, generate, models, pipeline, report, serve

    for module in (models, generate, data, compress, serve, pipeline, report):
        module.register(app)


_register()


def main() -> None:
    """Console-script entry point: known errors become one line on stderr and exit code 2."""
    common.run(app)
