"""Syntax tree to IR: names resolved, calls inlined, shapes checked, networks expanded."""
