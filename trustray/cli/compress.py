"""`trustray compress`: compress a model into the content-addressed checkpoint cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from trustray.cli.common import err_console, fail, stdout_to_stderr
from trustray.compress.spec import METHOD_NAMES


def spec_error(e: Exception) -> str:
    """One line naming the field(s) at fault, from a pydantic ValidationError or ValueError."""
    from pydantic import ValidationError

    if not isinstance(e, ValidationError):
        return str(e).replace("\n", " ")
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def compress_cmd(
    model: Annotated[str, typer.Option("--model", help="Embedded name, checkpoint directory or HF id.")] = (
        "smollm2-135m"
    ),
    method: Annotated[str, typer.Option("--method", help=", ".join(METHOD_NAMES) + ".")] = (
        "gptq"
    ),
    bits: Annotated[Optional[int], typer.Option("--bits", help="8, 4 or 3 (gptq, awq).")] = None,
    group_size: Annotated[
        Optional[int], typer.Option("--group-size", help="Quantisation group (default: largest of 128/64/32 fitting).")
    ] = None,
    act_order: Annotated[bool, typer.Option("--act-order", help="GPTQ activation ordering.")] = False,
    sparsity: Annotated[Optional[float], typer.Option("--sparsity", help="Unstructured sparsity in [0, 1).")] = None,
    structure: Annotated[Optional[str], typer.Option("--structure", help="N:M structure, e.g. 2:4.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Calibration seed: picks the samples and their order.")] = 0,
    samples: Annotated[int, typer.Option("--samples", help="Calibration samples.")] = 128,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per calibration sample.")] = 512,
    dataset: Annotated[
        str, typer.Option("--dataset", help="wikitext2, a local .txt/.jsonl file, or a hub dataset name.")
    ] = "wikitext2",
    data_dir: Annotated[
        Optional[Path], typer.Option("--data-dir", help="Data directory (default: $TRUSTRAY_DATA, else <cache>/data).")
    ] = None,
    cache: Annotated[Optional[Path], typer.Option("--cache", help="Checkpoint cache (default: <cache>/compressed).")] = (
        None
    ),
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="Torch threads (default: $TRUSTRAY_COMPRESS_THREADS, else 1)."),
    ] = None,
) -> None:
    """Compress MODEL and print the checkpoint path (a cached one is returned at once)."""
    from pydantic import ValidationError

    from trustray.compress import CalibrationSpec, CompressionSpec, compress, layer_widths
    from trustray.models import resolve_model

    fields = dict(method=method, bits=bits, group_size=group_size, act_order=act_order,
                  sparsity=sparsity, structure=structure)  # fmt: skip
    fields = {k: v for k, v in fields.items() if v is not None and v is not False}
    try:
        CompressionSpec(**fields)  # validate before touching the model
        calib = CalibrationSpec(dataset=dataset, num_samples=samples, seq_len=seq_len, seed=seed)
        base = resolve_model(model)
        spec = CompressionSpec.for_model(layer_widths(base.path), **fields)
    except (ValidationError, ValueError) as e:
        fail(spec_error(e))
    with stdout_to_stderr():  # llm-compressor logs to stdout; the checkpoint path is the answer
        result = compress(base, spec, calib, data_dir=data_dir, cache=cache, threads=threads)
    how = "cache hit" if result.cache_hit else ("base model" if spec.is_dense else f"{result.seconds:.1f}s")
    err_console.print(f"[dim]{spec.label()} checkpoint {result.key} ({how})[/]", highlight=False)
    print(result.path)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("compress")(compress_cmd)
