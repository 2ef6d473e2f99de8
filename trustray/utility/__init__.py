"""Utility metrics besides MMLU, computed on a loaded model directly."""

from trustray.utility.perplexity import OpenAIEndpoint, PerplexityResult, perplexity, perplexity_openai, window_spans

__all__ = ["OpenAIEndpoint", "PerplexityResult", "perplexity", "perplexity_openai", "window_spans"]
