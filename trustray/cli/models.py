"""`trustray models prepare|list`."""

from __future__ import annotations

import typer
from rich.table import Table

from trustray.cli.common import console

models_app = typer.Typer(help="Prepare and list models.", no_args_is_help=True)


@models_app.command("prepare")
def prepare_cmd(name: str = typer.Argument(..., help="Embedded model name, checkpoint directory or HF id.")) -> None:
    """Convert an embedded model into a cached checkpoint (once) and print its fingerprint."""
    from trustray.models import resolve_model

    with console.status(f"preparing {name} (first time only)…"):
        resolved = resolve_model(name)
    console.print(f"{resolved.name}  fingerprint {resolved.fingerprint}  {resolved.path}", highlight=False)


@models_app.command("list")
def list_cmd() -> None:
    """List the embedded models and whether each is prepared."""
    from trustray.models import list_models

    table = Table("name", "description", "prepared at")
    for row in list_models():
        table.add_row(row["name"], row["description"], row["prepared"] or "-")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
