"""ai-service: an OpenAI-compatible gateway with per-key usage and a prepaid USD balance."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
