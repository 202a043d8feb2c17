"""The optimizers (sgd, momentum, adam), written once for lists and arrays (numpy's, or a
device's through their array API namespace).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .config import TrainConfig


class Optimizer:
    """sgd, momentum or adam on the flat parameter vector: a list of floats (scalar backend) or a
    numpy array (numpy backend, whole-array operations). The formulas are written once and
    applied elementwise either way, so both backends compute the same numbers."""

    def __init__(self, config: TrainConfig, params: Any) -> None:
        self.c = config
        self.t = 0
        self.array = not isinstance(params, list)
        if self.array:
            import numpy as np

            lib: Any = np
            if not isinstance(params, np.ndarray):  # a PyTorch tensor (training on a device)
                import array_api_compat

                lib = array_api_compat.array_namespace(params)
            self.sqrt: Callable[[Any], Any] = lib.sqrt
            self.finite: Callable[[Any], bool] = lambda g: bool(lib.all(lib.isfinite(g)))
            self.v: Any = lib.zeros_like(params)  # the parameters' dtype (float32 stays float32)
            self.m: Any = lib.zeros_like(params)
        else:
            self.sqrt = math.sqrt
            self.finite = lambda g: all(map(math.isfinite, g))
            self.v = [0.0] * len(params)
            self.m = [0.0] * len(params)

    def each(self, f: Callable[..., Any], *vectors: Any, outputs: int = 1) -> Any:
        """``f`` elementwise: on whole arrays at once, or item by item over lists (one call per
        parameter; with several ``outputs``, f returns a tuple, regrouped into one list each)."""
        if self.array:
            return f(*vectors)
        results = list(map(f, *vectors))
        return results if outputs == 1 else tuple(map(list, zip(*results)))

    def step(self, params: Any, grads: Any) -> Any:
        c = self.c
        if c.optimizer == "sgd":
            return self.each(lambda p, g: p - c.lr * g, params, grads)
        if c.optimizer == "momentum":
            self.v = self.each(lambda v, g: c.momentum * v + g, self.v, grads)
            return self.each(lambda p, v: p - c.lr * v, params, self.v)
        self.t += 1
        b1, b2, sqrt = c.beta1, c.beta2, self.sqrt
        k1 = 1 - b1 ** self.t
        k2 = 1 - b2 ** self.t

        def adam(p: Any, g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            return p - c.lr * (m / k1) / (sqrt(v / k2) + c.eps), m, v

        params, self.m, self.v = self.each(adam, params, grads, self.m, self.v, outputs=3)
        return params
