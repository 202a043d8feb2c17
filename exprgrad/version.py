"""exprgrad's version (one place; generated modules and saved files record it)."""

__version__ = "0.1.0"
