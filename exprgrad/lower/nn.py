"""Neuron, Layer and MLP: the seed notebook's classes as IR builders.

Contract: :func:`declare_net` turns ``net n = MLP(3, [4, 4, 1], act=tanh, out=linear)`` into a
:class:`Net` holding its parameter tensors (one weight matrix and one bias vector per layer, so the
IR stays small however many weights there are); :func:`call_net` builds ``n(x)`` as IR.

Semantics follow the seed: every neuron is ``act(w . x + b)``, the output layer too unless
``out=`` says otherwise; a layer (or an MLP whose last layer) of one neuron returns a scalar.
Parameter elements are named hierarchically (``n.layers.0.neurons.1.w.2``) and ordered as the
seed's ``parameters()`` lists them (per neuron: its weights, then its bias), which is also the
order in which ``init_params(seed)`` draws them from ``random.Random(seed).uniform(-1, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.graph import Graph
from ..ir.node import Node
from ..ir.program import LayerSpec, Net, ParamTensor

ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


def declare_net(graph: Graph, name: str, kind: str, nin: int, nouts: list[int], act: str,
                out: str) -> Net:
    """Create the parameter tensors of a Neuron, Layer or MLP (validated by the caller)."""
    net = Net(name, kind, nin, [])
    sizes = [nin] + nouts
    for index, nout in enumerate(nouts):
        if kind == "MLP":
            prefix, tensor = f"{name}.layers.{index}.neurons", f"{name}.layers.{index}"
        elif kind == "Layer":
            prefix, tensor = f"{name}.neurons", name
        else:  # Neuron: one neuron, no neurons.i level
            prefix, tensor = "", name
        n_in = sizes[index]
        layer_act = out if index == len(nouts) - 1 else act

        neuron = f"{prefix}.{{0}}." if prefix else f"{name}."  # element (i, j): neuron i
        uniform = ("uniform", -1.0, 1.0)
        graph.group = tensor
        w = ParamTensor(f"{tensor}.w", graph.make("param", (), f"{tensor}.w", (nout, n_in)),
                        neuron + "w.{1}", [uniform] * (nout * n_in))
        b = ParamTensor(f"{tensor}.b", graph.make("param", (), f"{tensor}.b", (nout,)),
                        neuron + "b", [uniform] * nout)
        graph.group = None
        net.layers.append(LayerSpec(n_in, nout, layer_act, w, b))
        for i in range(nout):
            net.order.extend((w.name, i * n_in + j) for j in range(n_in))
            net.order.append((b.name, i))
    return net


def call_net(graph: Graph, net: Net, x: Node,
             node_of: Callable[[ParamTensor], Node] | None = None) -> Node:
    """``net(x)``: each layer is ``act(W @ x + b)``; one output neuron gives a scalar.
    ``node_of`` gives the node of a parameter tensor (default: its own node)."""
    node_of = node_of or (lambda t: t.node)
    saved = graph.group
    try:
        for layer in net.layers:
            # one box per layer when drawn collapsed (inside a user's network: that network's)
            graph.group = saved or layer.weight.name.rsplit(".", 1)[0]
            pre = graph.apply("add", graph.apply("matmul", node_of(layer.weight), x),
                              node_of(layer.bias))
            x = pre if layer.act == "linear" else graph.apply(layer.act, pre)
        if net.nout == 1:
            x = graph.apply("index", x, attr=0)
    finally:
        graph.group = saved
    return x
