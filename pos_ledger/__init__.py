"""pos-ledger: an event-sourced, signed, hash-chained ledger for smart cash registers."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
