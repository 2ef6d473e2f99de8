"""trustray: how much trust does an LLM lose (or gain) when it is compressed?"""

__version__ = "0.1.0"
