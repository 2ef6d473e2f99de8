"""Inference engines behind one protocol. Heavy backends are imported only when used."""

from trustray.engines.base import Engine, ProgressCallback

__all__ = ["Engine", "ProgressCallback", "HFEngine", "EngineOptions"]


def __getattr__(name: str):  # lazy: importing trustray.engines must not import torch
    if name in ("HFEngine", "EngineOptions"):
        from trustray.engines import hf

        return getattr(hf, name)
    raise AttributeError(name)
