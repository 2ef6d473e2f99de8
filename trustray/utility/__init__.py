"""Utility metrics besides MMLU, computed on a loaded model directly."""

from trustray.utility.perplexity import PerplexityResult, perplexity, perplexity_openai, window_spans

__all__ = ["PerplexityResult", "perplexity", "perplexity_openai", "window_spans"]
