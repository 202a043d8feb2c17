"""The IR: nodes, the op table, the graph builder, differentiation, the interpreter and the
program container. Imports nothing from exprgrad but the foundation (errors, limits)."""
