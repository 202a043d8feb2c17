"""Text to a syntax tree through the lark grammar (``grammar/exprgrad.lark``)."""
