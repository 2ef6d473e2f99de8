"""Load a compressed-tensors checkpoint as a plain dense model for CPU inference.

Weights are dequantised once at load (compressed-tensors' own decompressor, through
transformers), then copied into a freshly built model without any quantisation wrappers,
so every forward pass costs the same as the dense model's. For weight-only quantisation
this is numerically the same model; pruned checkpoints are stored dense already.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

QUANTIZATION_CONFIG = "quantization_config"


def is_compressed(path: str | Path) -> bool:
    """True when the checkpoint's config.json carries a ``quantization_config``."""
    try:
        return QUANTIZATION_CONFIG in json.loads((Path(path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False


def load_dense(path: str | Path, dtype: Any = "bfloat16") -> Any:
    """A ``transformers`` causal LM with dense ``dtype`` weights, in eval mode, on CPU.

    ``dtype`` is a torch dtype or its name (``"bfloat16"``, ``"float32"``, ``"auto"`` = the
    checkpoint's unquantised dtype). Checkpoints without a ``quantization_config`` load as is.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, CompressedTensorsConfig

    path = Path(path)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    if not is_compressed(path):
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).eval()

    # Dequantise in float32 so the int × scale products are exact before the final cast.
    quantised = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, quantization_config=CompressedTensorsConfig(dequantize=True)
    )
    state = quantised.state_dict()
    config = AutoConfig.from_pretrained(path)
    if hasattr(config, QUANTIZATION_CONFIG):
        delattr(config, QUANTIZATION_CONFIG)
    if torch_dtype == "auto":
        torch_dtype = getattr(config, "dtype", None) or torch.float32
        torch_dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else torch_dtype
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten below: skip the random init (~1.4 s)
        dense = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    wanted = dense.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(f"{path}: dequantised checkpoint lacks {len(missing)} weights, e.g. {missing[0]}")
    dense.load_state_dict({k: state[k] for k in wanted}, strict=True)
    del quantised, state
    if (path / "generation_config.json").is_file():
        from transformers import GenerationConfig

        dense.generation_config = GenerationConfig.from_pretrained(path)
    return dense.to(torch_dtype).eval()
