"""`trustray generate`: complete one prompt with a model and print the generations."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trustray.cli.common import console, fail


def generate_cmd(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Embedded name, checkpoint dir or HF id."),
    prompt: str = typer.Option(..., "--prompt", "-p", help="The user message (or raw prompt with --raw)."),
    system: str | None = typer.Option(None, "--system", help="A system message."),
    raw: bool = typer.Option(False, "--raw", help="Send the prompt as raw text, without the chat template."),
    n: int = typer.Option(1, "--n", min=1, help="Number of samples."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", min=0.0, help="0 = greedy."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0),
    top_k: int = typer.Option(50, "--top-k", min=0),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Request seed; sample i uses a seed derived from it."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows per forward pass."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bfloat16, float16 or float32."),
) -> None:
    """Generate completions for one prompt and print them."""
    from trustray.generation import GenerationRequest, Message, SamplingParams

    from trustray.engines.base import DTYPES

    if dtype not in DTYPES:
        fail(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if raw and system:
        fail("--system cannot be combined with --raw")
    if n > 1 and temperature == 0:
        fail("--n > 1 needs --temperature > 0 (greedy samples are identical)")
    sampling = SamplingParams(
        temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, n=n, stop=tuple(stop)
    )
    if raw:
        request = GenerationRequest(request_id="cli", sampling=sampling, seed=seed, prompt=prompt)
    else:
        msgs = ((Message("system", system),) if system else ()) + (Message("user", prompt),)
        request = GenerationRequest(request_id="cli", sampling=sampling, seed=seed, messages=msgs)

    from trustray.engines.hf import EngineOptions, HFEngine

    with console.status(f"loading {model}…"):
        engine = HFEngine(model, EngineOptions(dtype=dtype, batch_size=batch_size))  # type: ignore[arg-type]
    with Progress(
        TextColumn("generating"), BarColumn(), TextColumn("{task.completed}/{task.total} tokens"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as bar:
        task = bar.add_task("gen", total=n * max_tokens)
        out = engine.generate([request], progress=lambda tokens, _done: bar.advance(task, tokens))[0]
    for i, text in enumerate(out.texts):
        if n > 1:
            console.rule(f"sample {i}  ({out.output_tokens[i]} tokens, {out.finish_reasons[i]})")
        console.print(text, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate_cmd)
