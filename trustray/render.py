"""Moved to ``trustray.benchmarks.render`` (only the perspectives use it); kept so old imports work."""

from trustray.benchmarks.render import DT_TEMPLATES, build_request, dt_compat_prompt  # noqa: F401
