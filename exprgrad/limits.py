"""Documented limits. Every limit here is named in the error raised when it is exceeded.

These bound time and memory for hostile or accidental huge input (see docs/limits.md).
"""

#: the largest source text accepted, in characters
MAX_SOURCE_BYTES = 20_000_000
#: the longest line accepted, in characters
MAX_LINE_LENGTH = 1_000_000
#: the most scalar statements the scalar backend will print for one module
MAX_SCALAR_STATEMENTS = 400_000
#: the most IR nodes a program may create while compiling
MAX_NODES = 3_000_000
#: the most tokens (names, numbers, operators) a source text may hold
MAX_TOKENS = 1_000_000
#: the most elements one declared tensor (an argument, a parameter, a layer's weights) may have
MAX_TENSOR_ELEMENTS = 1_000_000
#: the most parameter elements a program may have (about 5 kB of memory each to compile)
MAX_PARAMS = 1_000_000
#: the most parameter elements the scalar backend writes out (about 15 kB each)
MAX_SCALAR_PARAMS = 200_000
#: the most statements the for loops of one def may unroll into
MAX_UNROLLED_STATEMENTS = 1_000_000
#: the deepest nesting of networks made from layer types (a layer whose network holds a network)
MAX_LAYER_DEPTH = 100
#: the most networks one network of a layer type may be made of (itself and every inner one)
MAX_NETWORKS = 100_000
