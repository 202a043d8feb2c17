"""Jupyter: a real notebook run by a real kernel (nbclient + ipykernel from this venv).

The notebook loads the extension, compiles the seed network in a ``%%exprgrad`` cell, checks
the compiled functions against numbers computed here (a forward pass written out by hand) and
in the kernel (finite differences of the compiled value function), trains, shows a mistake, and
displays the rich reprs. The kernel is this interpreter, through a kernelspec made in tmp.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from conftest import EXAMPLES

KERNEL = "exprgrad-test-python"

CHECKS = """\
import json, random
x, y = [2.0, 3.0, -1.0], 1.0
value = loss(params, x, y)
value2, grad = loss_grad(params, x, y)
h = 1e-6
fd = [(loss(params[:i] + [p + h] + params[i + 1:], x, y)
       - loss(params[:i] + [p - h] + params[i + 1:], x, y)) / (2 * h)
      for i, p in enumerate(params)]
print(json.dumps({"value": value, "value2": value2, "grad": grad, "fd": fd,
                  "params": params, "by_name": mlp.params_by_name(params),
                  "init0": mlp.init_params(0), "names": sorted(mlp.functions)}))
"""

TRAIN = """\
result = train(steps=60)
print(json.dumps({"losses": result.losses, "steps": result.steps,
                  "same_start": result.losses[0] == sum(loss(params, a, b) for a, b in
                      zip([[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]],
                          [1.0, -1.0, -1.0, 1.0]))}))
result
"""

BROKEN = "%%exprgrad broken\ndef f(x):\n    return x +* 2\n"


def _kernelspec(where: Path) -> None:
    spec = where / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "exprgrad test (this venv)", "language": "python"}))


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("jupyter")
    _kernelspec(tmp / "share")
    source = (EXAMPLES / "seed_mlp.exg").read_text(encoding="utf-8")
    cells = [
        "%load_ext exprgrad",
        "%%exprgrad mlp\n" + source,
        CHECKS,
        TRAIN,
        "loss_grad",
        "mlp",
        BROKEN,
        "print('broken' in dir(), 'after the mistake')",
        "%%exprgrad 1bad\ndef f(x):\n    return x\n",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    for i in (6, 8):
        nb.cells[i].metadata["tags"] = ["raises-exception"]
    # the kernelspec, connection files, Jupyter's and IPython's settings: all in tmp
    env = {"JUPYTER_PATH": tmp / "share", "JUPYTER_DATA_DIR": tmp / "data",
           "JUPYTER_RUNTIME_DIR": tmp / "runtime", "JUPYTER_CONFIG_DIR": tmp / "config",
           "IPYTHONDIR": tmp / "ipython"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=120,
                                         resources={"metadata": {"path": str(tmp)}})
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield nb


def _text(cell: Any, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == name)


def _data(cell: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for o in cell.outputs:
        if o.output_type in ("execute_result", "display_data"):
            out.update(o.data)
    return out


def _forward(by_name: dict[str, Any], x: list[float]) -> float:
    """The seed MLP written out: every layer tanh(W h + b)."""
    h = x
    for i in range(3):
        w, b = by_name[f"n.layers.{i}.w"], by_name[f"n.layers.{i}.b"]
        h = [math.tanh(sum(wj * hj for wj, hj in zip(row, h)) + bi) for row, bi in zip(w, b)]
    return h[0]


def test_the_magic_defines_the_documented_names(notebook: Any) -> None:
    line = _text(notebook.cells[1]).strip()
    assert line == ("exprgrad: defined mlp, loss, loss_grad, loss_grad_sum, loss_step, "
                    "loss_step_unrolled, loss_step_data, loss_vjp, params, train")
    data = json.loads(_text(notebook.cells[2]))
    assert data["names"] == ["loss", "loss_grad", "loss_grad_sum", "loss_step",
                             "loss_step_data", "loss_step_unrolled", "loss_vjp"]
    assert len(data["params"]) == 41
    assert data["params"] == data["init0"]  # seed=0 from the train statement


def test_compiled_functions_match_independent_numbers(notebook: Any) -> None:
    data = json.loads(_text(notebook.cells[2]))
    expected = (_forward(data["by_name"], [2.0, 3.0, -1.0]) - 1.0) ** 2
    assert data["value"] == pytest.approx(expected, rel=1e-12)
    assert data["value2"] == pytest.approx(expected, rel=1e-12)
    assert any(abs(g) > 1e-3 for g in data["grad"])
    for g, f in zip(data["grad"], data["fd"], strict=True):
        assert g == pytest.approx(f, rel=1e-5, abs=1e-7)


def test_train_reduces_the_loss_and_shows_a_short_summary(notebook: Any) -> None:
    cell = notebook.cells[3]
    data = json.loads(_text(cell))
    losses = data["losses"]
    assert data["steps"] == 60 and len(losses) == 60
    assert data["same_start"]  # trained from the params the cell put in the namespace
    assert losses[-1] < 0.2 * losses[0]
    bar = _text(cell, "stderr") + json.dumps(_data(cell))  # tqdm.auto: a widget or text
    assert "60/60" in bar, cell.outputs  # the progress bar reached the end
    shown = _data(cell)
    plain = shown["text/plain"]
    assert len(plain) < 200 and "\n" not in plain
    assert plain.startswith("TrainResult(60 steps, loss ")
    assert f"-> {losses[-1]:.6g}" in plain and "sgd" in plain and "41 parameters" in plain
    assert "<svg" in shown["text/html"] and "<!-- exprgrad loss curve -->" in shown["text/html"]
    assert "<!-- step -->" in shown["text/html"]  # matplotlib's axis label, as SVG text
    assert "60 steps" in shown["text/html"]


def test_functions_and_the_cell_show_their_generated_code(notebook: Any) -> None:
    shown = _data(notebook.cells[4])
    markdown = shown["text/markdown"]
    assert "```python\ndef loss_grad(params, x, y):" in markdown
    assert "tanh" in markdown and "return " in markdown
    assert shown["text/plain"].startswith("<exprgrad grad function loss_grad of def loss")
    cell_html = _data(notebook.cells[5])["text/html"]
    assert "def loss_vjp(" in cell_html and "41 parameters" in cell_html


def test_a_mistake_shows_the_caret_display_and_no_traceback(notebook: Any) -> None:
    errors = [o for o in notebook.cells[6].outputs if o.output_type == "error"]
    assert len(errors) == 1
    text = "\n".join(errors[0].traceback)
    lines = text.splitlines()
    assert lines[0].startswith("broken.exg:2:15: syntax error: unexpected '*'")
    assert lines[1:3] == ["        return x +* 2", "                  ^"]
    assert "Traceback" not in text and "File " not in text
    assert _text(notebook.cells[7]).strip() == "False after the mistake"
    usage = "\n".join("\n".join(o.traceback) for o in notebook.cells[8].outputs
                      if o.output_type == "error")
    assert "'1bad' is not a name" in usage and "Traceback" not in usage


def test_import_exprgrad_loads_no_ipython_nor_matplotlib() -> None:
    code = ("import sys, exprgrad; print(sorted(m for m in ('IPython', 'matplotlib', "
            "'exprgrad.ui.jupyter') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_without_ipython_the_extension_says_what_to_install(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import exprgrad

    monkeypatch.setitem(sys.modules, "IPython", None)
    with pytest.raises(ImportError, match=r"pip install 'exprgrad\[jupyter\]'"):
        exprgrad.load_ipython_extension(object())


def test_a_cell_never_takes_a_name_python_or_ipython_uses() -> None:
    from exprgrad.ui.jupyter import ExprgradCellError, _cell_name

    for name in ("print", "get_ipython", "In", "Out", "exit", "_private"):
        with pytest.raises(ExprgradCellError, match="a name Python or IPython uses itself"):
            _cell_name(name)
    assert _cell_name("model") == "model" and _cell_name("") == "exg"
