"""IR to Python text: one namer and module writer, the scalar and numpy backends, the allowlist,
and running generated code."""
