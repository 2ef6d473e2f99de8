"""Utility metrics besides MMLU, computed on a loaded model directly."""

from trustray.utility.perplexity import PerplexityResult, perplexity, window_spans

__all__ = ["PerplexityResult", "perplexity", "window_spans"]
