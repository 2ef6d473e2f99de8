"""One-shot magnitude pruning on llm-compressor's ``MagnitudePruningModifier``.

That modifier is built for gradual pruning during training: it computes its masks when it
starts but applies them to the weights only on optimiser steps, which a one-shot run never
takes. The subclass below applies the masks once, at start. llm-compressor's mask factory has
unstructured/channel/filter/block masks but no N:M; an ``N:M`` creator (keep the N largest
magnitudes in every M consecutive input weights) is registered beside them.
"""

from __future__ import annotations

import re
from typing import Any

_NM = r"^\d+:\d+$"


def _register_nm_mask() -> None:
    from llmcompressor.modifiers.pruning.utils.pytorch.mask_factory import (
        PruningMaskCreatorArgs,
        PruningMaskFactory,
    )

    if _NM in PruningMaskFactory.registry:
        return

    def nm_pruning(mask_structure: str):
        n, m = (int(x) for x in re.match(r"^(\d+):(\d+)$", mask_structure).groups())  # type: ignore[union-attr]

        def _create_mask(args: PruningMaskCreatorArgs):
            import torch

            scores = args.scores
            rows, cols = scores.shape
            if cols % m:
                raise ValueError(f"N:M mask {mask_structure}: layer width {cols} is not a multiple of {m}")
            blocks = scores.reshape(rows, cols // m, m)
            keep = torch.topk(blocks, n, dim=-1, largest=True, sorted=False).indices
            mask = torch.zeros_like(blocks, dtype=torch.bool).scatter_(-1, keep, True)
            return mask.reshape(rows, cols)

        return _create_mask

    PruningMaskFactory.registry.setdefault(_NM, nm_pruning)


def oneshot_magnitude_modifier(sparsity: float, mask_structure: str, targets: list[str]) -> Any:
    """A ``MagnitudePruningModifier`` that prunes the weights once, when the run starts."""
    from llmcompressor.modifiers.pruning import MagnitudePruningModifier

    _register_nm_mask()

    class OneShotMagnitudePruningModifier(MagnitudePruningModifier):
        def on_start(self, state, event, **kwargs):  # type: ignore[no-untyped-def]
            super().on_start(state, event, **kwargs)
            for name in self.parameterized_layers_:
                self.apply_mask_weight(name)

    return OneShotMagnitudePruningModifier(
        init_sparsity=sparsity,
        final_sparsity=sparsity,
        start=0,
        end=1,
        update_scheduler="polynomial",
        mask_structure=mask_structure,
        targets=targets,
    )
