"""Drawings: stable DOT text (golden files), real SVG from Graphviz's dot with the labels, values
and gradients in it, clear messages for huge graphs and a missing dot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, run_cli

import exprgrad
from exprgrad.api import program_of
from exprgrad.errors import ExprgradLimitError
from exprgrad.ui.drawing import dot_source

GOLDEN = ROOT / "tests" / "golden"
CASES = [("tour.exg", "f", {}, False), ("seed_graph.exg", "expression",
                                          {"a": 2.0, "b": -3.0, "c": 10.0, "f": -2.0}, False),
         ("seed_mlp.exg", "loss", {"x": [2.0, 3.0, -1.0], "y": 1.0}, True)]


@pytest.mark.parametrize("name,func,at,backward", CASES, ids=[c[0] for c in CASES])
def test_dot_matches_golden(name: str, func: str, at: dict, backward: bool,  # type: ignore[type-arg]
                            update_golden: bool) -> None:
    program = program_of(EXAMPLES / name)
    text = dot_source(program, func, at=at or None, backward=backward)
    assert text == dot_source(program_of(EXAMPLES / name), func, at=at or None,
                              backward=backward)
    golden = GOLDEN / (name.removesuffix(".exg") + ".dot")
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text()


def test_seed_values_and_gradients_in_real_svg(tmp_path: Path) -> None:
    """The notebook's L = d * f at a=2, b=-3, c=10, f=-2: L = -8, dL/da = 6, dL/db = -4 ..."""
    assert shutil.which("dot"), "Graphviz's dot is installed by scripts/setup.sh"
    out = tmp_path / "L.svg"
    result = run_cli("graph", "examples/seed_graph.exg", "expression", "--at", "a=2", "b=-3",
                     "c=10", "f=-2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for text in ("data &#45;8.0000", "grad 6.0000", "grad &#45;4.0000", "grad &#45;2.0000",
                 "grad 4.0000", "data 4.0000", ">L<", ">e<", ">d<"):
        assert text in svg, text
    # a second run may replace the file exprgrad wrote ...
    assert run_cli("graph", "examples/seed_graph.exg", "expression", "-o", str(out)
                   ).returncode == 0
    # ... but not somebody else's
    mine = tmp_path / "mine.svg"
    mine.write_text("<svg>my drawing</svg>")
    refused = run_cli("graph", "examples/seed_graph.exg", "-o", str(mine))
    assert refused.returncode == 2 and mine.read_text() == "<svg>my drawing</svg>"


def test_png_pdf_and_network_clusters(tmp_path: Path) -> None:
    for suffix, magic in ((".png", b"\x89PNG"), (".pdf", b"%PDF")):
        out = tmp_path / ("net" + suffix)
        result = run_cli("graph", "examples/seed_mlp.exg", "--collapse", "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert out.read_bytes().startswith(magic)
        again = run_cli("graph", "examples/seed_mlp.exg", "--collapse", "-o", str(out))
        assert again.returncode == 0, again.stderr  # exprgrad may replace its own pictures
    text = dot_source(program_of(EXAMPLES / "seed_mlp.exg"), "loss")
    for layer in range(3):
        assert f"cluster_n_layers_{layer}" in text
    collapsed = dot_source(program_of(EXAMPLES / "seed_mlp.exg"), "loss", collapse=True)
    assert 'shape="box3d"' in collapsed and "cluster_" not in collapsed


def test_size_limit_names_the_count_and_the_way_out() -> None:
    src = "def f(x):\n" + "    x = sin(x) * x\n" * 300 + "    return x\n"
    from exprgrad.lower.lowering import compile_program

    with pytest.raises(ExprgradLimitError) as info:
        dot_source(compile_program(src, "big.exg"), "f")
    assert "nodes" in str(info.value) and "400" in str(info.value)


def test_without_dot_svg_explains_and_dot_still_works(tmp_path: Path) -> None:
    import subprocess
    import sys

    env_path = str(Path(sys.executable).parent)  # a PATH on which Graphviz's dot is not found

    base = [sys.executable, "-m", "exprgrad", "graph", str(EXAMPLES / "tour.exg")]
    env = {"PATH": env_path, "PYTHONPATH": str(ROOT)}
    assert shutil.which("dot", path=env_path) is None
    svg = subprocess.run(base + ["-o", str(tmp_path / "t.svg")], env=env, capture_output=True,
                         text=True)
    assert svg.returncode == 2 and "apt-get install graphviz" in svg.stderr
    dot = subprocess.run(base + ["-o", str(tmp_path / "t.dot")], env=env, capture_output=True,
                         text=True)
    assert dot.returncode == 0 and "digraph exprgrad" in (tmp_path / "t.dot").read_text()


def test_python_api_returns_a_digraph() -> None:
    import graphviz

    g = exprgrad.draw(EXAMPLES / "seed_graph.exg", "neuron",
             at={"x1": 2.0, "x2": 0.0, "w1": -3.0, "w2": 1.0})
    assert isinstance(g, graphviz.Digraph)
    assert "data 0.7071" in g.source and "grad 0.5000" in g.source
    assert "image/svg+xml" in g._repr_mimebundle_()  # renders inline in Jupyter


# --- drawings that are right: names, constants, collapsed layers, trained networks -------------

import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402

from exprgrad.lower.lowering import compile_program  # noqa: E402

FUNCS = """\
def g(a, b, c, f):
    return (a*b + c) * f

def h(a, b, c):
    return (a + b) * c

def s1(x):
    return 1 - x

def s2(x):
    return x - 1

def q1(x):
    return 2 / x

def q2(x):
    return x / 2

def sq(x):
    return x * x
"""
RECORD = re.compile(r'^\s*(\w+) \[label="\{ (.*) \}", shape="record"(, style="filled".*)?\];$')
EDGE = re.compile(r'^\s*(\w+) -> (\w+)(?: \[label="(\d+)"\])?;$')


def records(text: str) -> dict[str, tuple[list[str], bool]]:
    """DOT node id -> (its record's fields, whether it is shaded: the gradient program)."""
    out = {}
    for line in text.splitlines():
        m = RECORD.match(line)
        if m:
            out[m.group(1)] = ([f.strip() for f in m.group(2).split(" | ")], bool(m.group(3)))
    return out


def edges(text: str) -> list[tuple[str, str, str | None]]:
    return [(m.group(1), m.group(2), m.group(3)) for line in text.splitlines()
            if (m := EDGE.match(line))]


def plain(text: str) -> str:
    """Graphviz's own reading of the DOT text (its 'plain' layout: node and edge lines)."""
    assert shutil.which("dot"), "Graphviz's dot is installed by scripts/setup.sh"
    result = subprocess.run(["dot", "-Tplain"], input=text, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_forward_nodes_carry_only_user_names_or_their_operation() -> None:
    program = compile_program(FUNCS, "funcs.exg")
    user = {"a", "b", "c", "f", "x"}
    for fname, at in (("g", {"a": 1.0, "b": 2.0, "c": 3.0, "f": 4.0}),
                      ("h", {"a": 1.0, "b": 2.0, "c": 3.0})):
        for kwargs in ({"backward": True}, {"at": at}, {"at": at, "backward": True}):
            text = dot_source(program, fname, **kwargs)  # type: ignore[arg-type]
            forward = {k: fields for k, (fields, shaded) in records(text).items() if not shaded}
            assert len(forward) == len(at) + (3 if fname == "g" else 2)
            for ident, fields in forward.items():
                first = fields[0]
                assert first in user or first in ("mul", "add") or first.startswith("data"), \
                    (fname, ident, fields)
                assert not re.fullmatch(r"d[a-z]+", first), (fname, ident, fields)
    # the root: the gradient pass did not name the shared forward nodes 'df' / 'dc'
    graph = program.graph
    for fname in ("g", "h"):
        (out,) = program.functions[fname].outputs
        for node in out.args:
            assert not graph.names.get(node.id, "").startswith("d"), graph.names.get(node.id)


def test_every_constant_is_its_own_leaf_in_operand_order() -> None:
    program = compile_program(FUNCS, "funcs.exg")
    for first, second, number in (("s1", "s2", "1"), ("q1", "q2", "2")):
        texts = {f: dot_source(program, f) for f in (first, second)}
        assert texts[first] != texts[second]
        for fname, const_position in ((first, "1"), (second, "2")):
            text = texts[fname]
            recs = records(text)
            consts = [k for k in recs if k.startswith("c")]
            assert len(consts) == 1 and recs[consts[0]][0] == [number], text
            into_op = {src: label for src, dst, label in edges(text) if dst.endswith("_op")}
            x = next(k for k, (fields, _) in recs.items() if fields == ["x"])
            assert into_op == {consts[0]: const_position, x: "2" if const_position == "1"
                               else "1"}, text
            # Graphviz draws the constant as a node and both numbered edges
            layout = plain(text)
            assert re.search(rf"^node {consts[0]} .* {number} ", layout, re.M), layout
            assert re.search(rf"^edge {consts[0]} \w+_op .* {const_position} ", layout, re.M)
            assert re.search(rf"^edge {x} \w+_op .* {3 - int(const_position)} ", layout, re.M)


def test_each_operand_has_its_edge() -> None:
    text = dot_source(compile_program(FUNCS, "funcs.exg"), "sq")
    x = next(k for k, (fields, _) in records(text).items() if fields == ["x"])
    into = [dst for src, dst, _ in edges(text) if src == x]
    assert len(into) == 2 and into[0] == into[1] and into[0].endswith("_op")
    assert len(re.findall(rf"^edge {x} ", plain(text), re.M)) == 2


def test_no_box_is_empty_without_values() -> None:
    program = program_of(EXAMPLES / "seed_mlp.exg")
    text = dot_source(program, "loss", backward=True)
    recs = records(text)
    assert recs and all(fields and all(f for f in fields) for fields, _ in recs.values())
    assert ["pow"] in [fields for fields, _ in recs.values()]  # (n(x) - y) ** 2, unnamed


def test_collapsed_network_keeps_the_edges_between_layers(tmp_path: Path) -> None:
    text = dot_source(program_of(EXAMPLES / "seed_mlp.exg"), "loss", collapse=True)
    layers = [f"layer_n_layers_{k}" for k in range(3)]
    found = {(src, dst) for src, dst, _ in edges(text)}
    x = next(k for k, (fields, _) in records(text).items() if fields[0] == "x")
    assert (x, layers[0]) in found and (layers[0], layers[1]) in found
    assert (layers[1], layers[2]) in found
    assert any(src == layers[2] and dst.endswith("_op") for src, dst in found)
    # the output is reachable from x through the boxes
    succ: dict[str, set[str]] = {}
    for src, dst in found:
        succ.setdefault(src, set()).add(dst)
    seen, todo = set(), [x]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(succ.get(node, ()))
    assert all(layer in seen for layer in layers)
    assert {k for k, (f, _) in records(text).items() if f == ["pow"]} <= seen
    layout = plain(text)
    for a, b in ((x, layers[0]), (layers[0], layers[1]), (layers[1], layers[2])):
        assert re.search(rf"^edge {a} {b} ", layout, re.M), layout
    out = tmp_path / "net.png"
    assert run_cli("graph", "examples/seed_mlp.exg", "--collapse", "-o", str(out)).returncode == 0


def test_trained_network_is_drawn_with_its_parameters(tmp_path: Path) -> None:
    from exprgrad.emit.load import module_from_code
    from exprgrad.emit.scalar import generate
    from exprgrad.run.evaluate import evaluate
    from exprgrad.run.paramsio import load_params

    saved = tmp_path / "p.json"
    trained = run_cli("train", "examples/seed_mlp.exg", "--steps", "30", "--save", str(saved),
                      "--quiet")
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "trained.dot"
    at = ["x=[2,3,-1]", "y=1"]
    result = run_cli("graph", "examples/seed_mlp.exg", "loss", "--params", str(saved),
                     "--at", *at, "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    program = program_of(EXAMPLES / "seed_mlp.exg")
    params = load_params(str(saved), program)
    module = module_from_code(generate(program), "m", "<test>")
    value = evaluate(program, module, "loss", {"x": [2.0, 3.0, -1.0], "y": 1.0}, params).value
    untrained = evaluate(program, module, "loss", {"x": [2.0, 3.0, -1.0], "y": 1.0},
                         module.init_params(0)).value
    assert abs(value - untrained) > 1e-3  # training changed the loss: the check can tell them
    # the output record (the only forward record without an outgoing edge) shows that value
    sources = {src for src, _, _ in edges(text)}
    (output,) = [fields for k, (fields, shaded) in records(text).items()
                 if not shaded and k not in sources]
    assert output[0] == f"data {value:.4f}", (output, value)
    # a parameter record shows the trained value
    bias = json.loads(saved.read_text())["params"]["n.layers.2.neurons.0.b"]
    (bias_fields,) = [f for f, _ in records(text).values() if f[0] == "n.layers.2.b"]
    assert bias_fields[1] == f"data {bias:.4f}"
    # the Python API: the file, its contents and the flat list draw the same picture
    body = exprgrad.draw(EXAMPLES / "seed_mlp.exg", "loss", at={"x": [2, 3, -1], "y": 1},
                         params=saved).source
    assert f"data {value:.4f}" in body
    assert body == exprgrad.draw(EXAMPLES / "seed_mlp.exg", "loss", at={"x": [2, 3, -1],
                                 "y": 1}, params=params).source
    assert body == exprgrad.draw(EXAMPLES / "seed_mlp.exg", "loss", at={"x": [2, 3, -1],
                                 "y": 1}, params=json.loads(saved.read_text())).source
    # real Graphviz renders it
    png = tmp_path / "trained.png"
    assert run_cli("graph", "examples/seed_mlp.exg", "loss", "--params", str(saved), "--at",
                   *at, "-o", str(png)).returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_which_function_is_drawn(tmp_path: Path) -> None:
    src = tmp_path / "funcs.exg"
    src.write_text(FUNCS)
    out = tmp_path / "f.dot"
    first = run_cli("graph", str(src), "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert "drew 'g'" in first.stderr and "s2" in first.stderr
    assert {f[0] for f, _ in records(out.read_text()).values()} >= {"a", "b", "c", "f"}
    # --at written before the function's name does not swallow it
    named = run_cli("graph", str(src), "--at", "x=3", "s1", "-o", str(out), "--force")
    assert named.returncode == 0, named.stderr
    assert named.stderr == ""
    text = out.read_text()
    recs = records(text)
    assert ["x", "data 3.0000", "grad -1.0000"] in [f for f, _ in recs.values()]
    assert ["data -2.0000", "grad 1.0000"] in [f for f, _ in recs.values()]
    missing = run_cli("graph", str(src), "nope", "-o", str(out), "--force")
    assert missing.returncode == 2 and "no function 'nope'" in missing.stderr
