"""Model compression: GPTQ/AWQ quantisation and SparseGPT/Wanda/magnitude pruning via llm-compressor.

``compress(model, spec, calib)`` writes (or finds) a content-addressed compressed-tensors
checkpoint; ``load_dense(path)`` loads one for CPU inference with dense weights.
"""

from trustray.compress.calibration import CalibrationSet, CalibrationSource, build_calibration
from trustray.compress.load import is_compressed, load_dense
from trustray.compress.recipes import METHODS, build_recipe
from trustray.compress.run import (
    RECORD_FILE,
    CompressedModel,
    cache_key,
    checkpoint_digest,
    compress,
    layer_widths,
    read_record,
)
from trustray.compress.spec import CalibrationSpec, CompressionSpec, default_group_size, parse_structure

__all__ = [
    "METHODS",
    "RECORD_FILE",
    "CalibrationSet",
    "CalibrationSource",
    "CalibrationSpec",
    "CompressedModel",
    "CompressionSpec",
    "build_calibration",
    "build_recipe",
    "cache_key",
    "checkpoint_digest",
    "compress",
    "default_group_size",
    "is_compressed",
    "layer_widths",
    "load_dense",
    "parse_structure",
    "read_record",
]
