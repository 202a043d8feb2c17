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
