"""Gradients checked against independent references: sympy (symbolic and mpmath) and central
differences of the generated forward code."""
