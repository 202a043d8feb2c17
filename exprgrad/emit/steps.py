"""The optimizers' updates as element operations, for the generated training steps.

Contract: :func:`update` writes one optimizer step through an element algebra (anything with
``scalar(op, args)``, see :class:`exprgrad.ir.ops.Algebra`): from the parameter elements, the
batch's summed gradient elements, the optimizer's state and its settings it returns the new
parameters and the new state. The formulas are those of :mod:`exprgrad.run.optimizer`, the same
operations in the same order, except that sgd folds the gradient's ``scale`` (``1/batch`` for
``reduce=mean``) into the learning rate once per step instead of once per parameter.

A generated step takes its arguments in this order: ``params``, the state vectors
(:data:`STATE`), the batch (one sequence per argument, as ``f_grad_sum``), the settings
(:data:`SETTINGS`), ``scale``; it returns ``(summed loss, new params, *new state vectors)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: the generated step of each optimizer, by entry kind (see exprgrad.ir.program.ENTRY_KINDS)
STEP_KINDS = {"sgd": "step", "momentum": "step_momentum", "adam": "step_adam"}
#: the optimizer state a step takes and returns (adam's ``t``, the 1-based number of this
#: update, is taken but not returned)
STATE = {"sgd": (), "momentum": ("velocity",), "adam": ("m", "v", "t")}
#: the settings a step takes after the batch, in order (then ``scale``)
SETTINGS = {"sgd": ("lr",), "momentum": ("lr", "momentum"),
            "adam": ("lr", "beta1", "beta2", "eps")}


def update(alg: Any, optimizer: str, params: Sequence[Any], grads: Sequence[Any],
           state: dict[str, Any], settings: dict[str, Any], scale: Any
           ) -> tuple[list[Any], list[list[Any]]]:
    """``(new params, new state vectors)`` (see the module docstring); ``state`` maps each name
    of :data:`STATE` to its elements (``t`` to one element), ``settings`` each setting to one."""
    s = alg.scalar
    lr = settings["lr"]
    if optimizer == "sgd":
        k = s("mul", [lr, scale])
        return [s("sub", [p, s("mul", [k, g])]) for p, g in zip(params, grads)], []
    if optimizer == "momentum":
        mu = settings["momentum"]
        velocity = [s("add", [s("mul", [mu, v]), s("mul", [g, scale])])
                    for v, g in zip(state["velocity"], grads)]
        return [s("sub", [p, s("mul", [lr, v])]) for p, v in zip(params, velocity)], [velocity]
    assert optimizer == "adam", f"no update for {optimizer!r}"
    b1, b2, eps, t = settings["beta1"], settings["beta2"], settings["eps"], state["t"]
    k1 = s("sub", [1.0, s("pow", [b1, t])])
    k2 = s("sub", [1.0, s("pow", [b2, t])])
    c1, c2 = s("sub", [1.0, b1]), s("sub", [1.0, b2])
    new_p, new_m, new_v = [], [], []
    for p, g, m, v in zip(params, grads, state["m"], state["v"]):
        g = s("mul", [g, scale])
        m = s("add", [s("mul", [b1, m]), s("mul", [c1, g])])
        v = s("add", [s("mul", [b2, v]), s("mul", [s("mul", [c2, g]), g])])
        shrink = s("add", [s("sqrt", [s("div", [v, k2])]), eps])
        new_p.append(s("sub", [p, s("div", [s("mul", [lr, s("div", [m, k1])]), shrink])]))
        new_m.append(m)
        new_v.append(v)
    return new_p, [new_m, new_v]


def step_doc(fname: str, optimizer: str, batch: bool = True) -> str:
    """The docstring of a generated step of ``optimizer`` for the loss ``fname`` (without
    ``batch``: the arguments and results of a step that takes no batch)."""
    state = STATE[optimizer]
    returned = ", ".join(["summed loss", "new params", *(f"new {n}" for n in state if n != "t")])
    taken = ", ".join(["params", *state, *(["batch (one sequence per argument)"] if batch else []),
                       *SETTINGS[optimizer], "scale=1.0"])
    head = f"One {optimizer} step on {fname} summed over a batch: " if batch else ""
    return (f"{head}({taken}) -> ({returned}); the gradient is multiplied by scale (1/batch "
            "size for a mean loss).")
