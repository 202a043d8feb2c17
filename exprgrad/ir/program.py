"""The program container: what lowering produces and every later stage reads.

Contract: a :class:`Program` holds one shared, hash-consed :class:`~exprgrad.ir.graph.Graph`,
one :class:`Function` per ``def`` (its input and output nodes in that graph), the parameter
tensors (:class:`ParamTensor`) in their canonical flat order (``param_order``, the order of
``PARAM_NAMES`` and ``init_params``), the networks (:class:`Net`), the data sets and the training
statement. Backends, the checker and drawings read a Program and never change its functions;
derivatives are added to its graph once, through :mod:`exprgrad.ir.derive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Span
from .graph import Graph
from .node import Node

#: the generated functions of one user ``def``, by kind, with the suffix of their Python name
#: (the frontend refuses a def named like another's generated function)
ENTRY_KINDS = {"value": "", "grad": "_grad", "grad_sum": "_grad_sum", "hess": "_hess",
               "vjp": "_vjp", "step": "_step", "step_momentum": "_step_momentum",
               "step_adam": "_step_adam", "step_unrolled": "_step_unrolled",
               "step_momentum_unrolled": "_step_momentum_unrolled",
               "step_adam_unrolled": "_step_adam_unrolled", "step_data": "_step_data",
               "step_momentum_data": "_step_momentum_data", "step_adam_data": "_step_adam_data"}


def element_indices(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The index of each element of a tensor of ``shape`` (rank 0 to 2), in row-major order."""
    if len(shape) == 0:
        return [()]
    if len(shape) == 1:
        return [(i,) for i in range(shape[0])]
    return [(i, j) for i in range(shape[0]) for j in range(shape[1])]


@dataclass
class ParamTensor:
    """A trainable tensor: its IR node, how its elements are named, and each element's init."""

    name: str
    node: Node
    #: an element's name is ``name_format.format(*index)`` (``"n.layers.0.neurons.{0}.w.{1}"``,
    #: ``"w.{0}"``, ``"w"``)
    name_format: str
    #: per element: ("uniform", lo, hi) | ("normal", mean, sd) | ("const", value, 0.0)
    init: list[tuple[str, float, float]]

    @property
    def element_names(self) -> list[str]:
        """Each element's name, in row-major order."""
        return [self.name_format.format(*index) for index in element_indices(self.node.shape)]


@dataclass
class LayerSpec:
    nin: int
    nout: int
    act: str
    weight: ParamTensor
    bias: ParamTensor


@dataclass
class Net:
    """A network: a built-in ``MLP``, ``Layer`` or ``Neuron`` (``layers`` set), or one made
    from a user's ``layer`` type (``forward`` set: the layer's forward def, lowered with this
    network's own parameters; ``layers`` empty)."""

    name: str
    kind: str
    nin: int
    layers: list[LayerSpec]
    #: (tensor name, element index) in the seed's parameters() order
    order: list[tuple[str, int]] = field(default_factory=list)
    forward: Function | None = None
    #: a user layer's network: every parameter tensor it owns, its inner networks' too
    tensors: list[str] = field(default_factory=list)

    @property
    def nout(self) -> int:
        return self.layers[-1].nout

    @property
    def tensor_names(self) -> list[str]:
        """The names of the parameter tensors this network owns."""
        return self.tensors + [t.name for layer in self.layers for t in (layer.weight,
                                                                          layer.bias)]


@dataclass
class Function:
    name: str
    arg_names: list[str]
    arg_shapes: list[tuple[int, ...]]
    inputs: list[Node]
    outputs: list[Node]
    span: Span
    uses_params: bool = False
    rule_spans: list[Span] = field(default_factory=list)


@dataclass
class Program:
    filename: str
    source: str
    graph: Graph
    functions: dict[str, Function] = field(default_factory=dict)
    params: dict[str, ParamTensor] = field(default_factory=dict)
    #: the flat parameter vector: (tensor name, element index), in declaration order
    param_order: list[tuple[str, int]] = field(default_factory=list)
    nets: dict[str, Net] = field(default_factory=dict)
    #: the user's layer types by name (exprgrad.syntax.parser.LayerDecl)
    layer_types: dict[str, Any] = field(default_factory=dict)
    data: dict[str, list[Any]] = field(default_factory=dict)
    data_spans: dict[str, Span] = field(default_factory=dict)
    #: the file's 'train' statement (an exprgrad.syntax.parser.TrainDecl), if any
    train: Any = None
    #: function name -> (the function, its derivatives): see exprgrad.ir.derive
    derived: dict[str, tuple[Function, Any]] = field(default_factory=dict)

    @property
    def param_names(self) -> list[str]:
        """Each element of the flat parameter vector by name, in ``param_order``."""
        names = {t: pt.element_names for t, pt in self.params.items()}
        return [names[t][i] for t, i in self.param_order]

    def param_layout(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """Each tensor's place in the flat parameter vector, ``(offset, strides)``: element
        ``index`` is at ``offset + sum(index[k] * strides[k])``. Lowering lays tensors out so
        (a declared tensor is contiguous; a network's weight rows are interleaved with their
        biases, the seed's order); asserted here, as every per-tensor description relies on it."""
        where: dict[str, list[int]] = {t: [0] * pt.node.size for t, pt in self.params.items()}
        for pos, (t, i) in enumerate(self.param_order):
            where[t][i] = pos
        layout: dict[str, tuple[int, tuple[int, ...]]] = {}
        for t, pt in self.params.items():
            positions, shape = where[t], pt.node.shape
            rows, cols = (1, 1) if not shape else (1, shape[0]) if len(shape) == 1 else shape
            step = positions[1] - positions[0] if cols > 1 else 1
            jump = positions[cols] - positions[0] if rows > 1 else cols * step
            expected = [positions[0] + r * jump + c * step for r in range(rows)
                        for c in range(cols)]
            assert positions == expected, f"parameter {t} is not strided in param_order"
            layout[t] = (positions[0], ((jump, step) if len(shape) == 2 else
                                        (step,) if shape else ()))
        return layout

    def init_runs(self) -> list[tuple[int, str, float, float]]:
        """The initialisers of the flat parameter vector as runs, in ``param_order``:
        ``(count, kind, a, b)`` for ``count`` consecutive elements initialised alike (every
        weight and bias of a network is one run). ``init_params(seed)`` draws them in this
        order from one ``random.Random(seed)``."""
        kinds: list[tuple[str, float, float]] = []
        counts: list[int] = []
        for t, i in self.param_order:
            init = self.params[t].init[i]
            if not kinds or (init is not kinds[-1] and _init_key(init) != _init_key(kinds[-1])):
                kinds.append(init)
                counts.append(0)
            counts[-1] += 1
        runs = [(count, *init) for count, init in zip(counts, kinds)]
        return runs


def _init_key(init: tuple[str, float, float]) -> tuple[str, str, str]:
    """Initialisers compared by their printed numbers (so -0.0 differs from 0.0, nan is nan)."""
    return init[0], repr(init[1]), repr(init[2])
