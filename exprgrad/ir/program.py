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
               "step_adam_unrolled": "_step_adam_unrolled"}


@dataclass
class ParamTensor:
    """A trainable tensor: its IR node, the name of each element, and each element's init."""

    name: str
    node: Node
    element_names: list[str]
    #: per element: ("uniform", lo, hi) | ("normal", mean, sd) | ("const", value, 0.0)
    init: list[tuple[str, float, float]]


@dataclass
class LayerSpec:
    nin: int
    nout: int
    act: str
    weight: ParamTensor
    bias: ParamTensor


@dataclass
class Net:
    name: str
    kind: str
    nin: int
    layers: list[LayerSpec]
    #: (tensor name, element index) in the seed's parameters() order
    order: list[tuple[str, int]] = field(default_factory=list)

    @property
    def nout(self) -> int:
        return self.layers[-1].nout


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
    data: dict[str, list[Any]] = field(default_factory=dict)
    data_spans: dict[str, Span] = field(default_factory=dict)
    #: the file's 'train' statement (an exprgrad.syntax.parser.TrainDecl), if any
    train: Any = None
    #: function name -> (the function, its derivatives): see exprgrad.ir.derive
    derived: dict[str, tuple[Function, Any]] = field(default_factory=dict)

    @property
    def param_names(self) -> list[str]:
        return [self.params[t].element_names[i] for t, i in self.param_order]
