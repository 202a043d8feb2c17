"""Generated training steps (``f_step``, ``f_step_momentum``, ``f_step_adam`` and their unrolled
variants): one optimizer update fused into the gradient code.

References are independent of the steps: the optimizers' formulas are written out here again,
applied to the batch sum of ``f_grad`` (itself checked against sympy and finite differences
elsewhere), and the sgd step's gradient is also checked against central differences.
"""

from __future__ import annotations

import math
import random

import pytest
from conftest import EXAMPLES, run_cli

import exprgrad
from exprgrad.api import compile_program as program_of
from exprgrad.api import entry_point, module_from_code
from exprgrad.emit.scalar import generate
from exprgrad.errors import ExprgradError

PROGRAMS = {
    "seed": "net n = MLP(3, [4, 4, 1])\ndef loss(x[3], y):\n    return (n(x) - y) ** 2\n",
    # a matrix argument, a gradient that is the same for every example, and a weight penalty
    # that depends on no example (computed once in an unrolled step)
    "mixed": "param w[2] = [0.3, -0.7]\nparam s = 0.2\n"
             "def loss(m[2, 2], t):\n    v = tanh(m @ w) * t\n"
             "    return dot(v, v) + s + s * t + 0.01 * dot(w, w) * exp(s)\n",
    # user names that the step's own arguments would take
    "names": "param a = 0.5\nparam b[2] = [1.0, -2.0]\n"
             "def loss(lr, scale):\n    return (a * lr - dot(b, b) * scale) ** 2\n",
}
SETTINGS = {"sgd": dict(lr=0.03), "momentum": dict(lr=0.03, momentum=0.8),
            "adam": dict(lr=0.03, beta1=0.9, beta2=0.999, eps=1e-8)}


def _batch(name: str, n: int, rng: random.Random) -> list[list[object]]:
    if name == "seed":
        return [[[rng.uniform(-2, 2) for _ in range(3)] for _ in range(n)],
                [rng.choice([-1.0, 1.0]) for _ in range(n)]]
    if name == "mixed":
        return [[[[rng.uniform(-2, 2) for _ in range(2)] for _ in range(2)] for _ in range(n)],
                [rng.uniform(-1, 1) for _ in range(n)]]
    return [[rng.uniform(-1, 1) for _ in range(n)], [rng.uniform(-1, 1) for _ in range(n)]]


def _reference(mod, optimizer, params, state, t, cols, scale):  # type: ignore[no-untyped-def]
    """One update written from the optimizers' textbook formulas on the summed f_grad."""
    total, g = 0.0, [0.0] * len(params)
    for example in zip(*cols):
        value, grad = mod.loss_grad(params, *example)
        total += value
        g = [a + b for a, b in zip(g, grad)]
    g = [x * scale for x in g]
    s = SETTINGS[optimizer]
    if optimizer == "sgd":
        return total, [p - s["lr"] * d for p, d in zip(params, g)], []
    if optimizer == "momentum":
        v = [s["momentum"] * v + d for v, d in zip(state[0], g)]
        return total, [p - s["lr"] * x for p, x in zip(params, v)], [v]
    m = [s["beta1"] * a + (1 - s["beta1"]) * d for a, d in zip(state[0], g)]
    v = [s["beta2"] * a + (1 - s["beta2"]) * d * d for a, d in zip(state[1], g)]
    mh = [a / (1 - s["beta1"] ** t) for a in m]
    vh = [a / (1 - s["beta2"] ** t) for a in v]
    return total, [p - s["lr"] * a / (math.sqrt(b) + s["eps"])
                   for p, a, b in zip(params, mh, vh)], [m, v]


def _close(a: list[float], b: list[float], tol: float = 1e-12) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("optimizer", sorted(SETTINGS))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_steps_apply_the_optimizer_to_the_summed_gradient(name: str, optimizer: str) -> None:
    n = 5
    program = program_of(PROGRAMS[name], f"{name}.exg")
    mod = module_from_code(generate(program, steps=(optimizer,), unroll=n), name,
                                    f"<{name}>")
    looped = entry_point(mod, "loss", {"sgd": "step"}.get(optimizer,
                                                                    f"step_{optimizer}"))
    unrolled = entry_point(mod, "loss", {"sgd": "step"}.get(
        optimizer, f"step_{optimizer}") + "_unrolled")
    rng = random.Random(f"{name}{optimizer}")
    params = mod.init_params(3)
    state = [[0.0] * len(params) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[optimizer])]
    for t in range(1, 4):
        cols = _batch(name, n, rng)
        scale = 1.0 if t != 2 else 1.0 / n  # a mean loss scales the gradient
        counter = [t] if optimizer == "adam" else []
        want_loss, want, want_state = _reference(mod, optimizer, params, state, t, cols, scale)
        for step in (looped, unrolled):
            loss, new, *new_state = step(params, *state, *counter, *cols,
                                         *SETTINGS[optimizer].values(), scale)
            assert math.isclose(loss, want_loss, rel_tol=1e-13)
            assert _close(new, want), (step.__name__, t)
            assert all(_close(a, b) for a, b in zip(new_state, want_state))
            assert len(new_state) == len(want_state)
        # the loop and the unrolled step do the same operations in the same order
        assert looped(params, *state, *counter, *cols, *SETTINGS[optimizer].values(), scale) \
            == unrolled(params, *state, *counter, *cols, *SETTINGS[optimizer].values(), scale)
        params, state = want, want_state


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_sgd_step_descends_along_central_differences(name: str) -> None:
    program = program_of(PROGRAMS[name], f"{name}.exg")
    mod = module_from_code(generate(program, unroll=4), name, f"<{name}>")
    cols = _batch(name, 4, random.Random(name))
    params = mod.init_params(1)
    lr = 1e-3
    for step in (mod.loss_step, mod.loss_step_unrolled):
        loss, new = step(params, *cols, lr)
        assert math.isclose(loss, sum(mod.loss(params, *ex) for ex in zip(*cols)),
                            rel_tol=1e-13)
        for i in range(len(params)):
            up, down = list(params), list(params)
            up[i] += 1e-6
            down[i] -= 1e-6
            fd = (sum(mod.loss(up, *ex) for ex in zip(*cols))
                  - sum(mod.loss(down, *ex) for ex in zip(*cols))) / 2e-6
            assert math.isclose((params[i] - new[i]) / lr, fd, rel_tol=1e-5, abs_tol=1e-6)


def test_an_unrolled_step_takes_only_its_batch_size() -> None:
    mod = module_from_code(generate(program_of(PROGRAMS["seed"], "s.exg"), unroll=4),
                                    "s", "<s>")
    cols = _batch("seed", 3, random.Random(0))
    with pytest.raises(ValueError):
        mod.loss_step_unrolled(mod.init_params(0), *cols, 0.1)
    assert "exactly 4 examples" in mod.loss_step_unrolled.__doc__


def test_training_through_the_fused_step_matches_a_hand_loop() -> None:
    """exprgrad.train (now through loss_step_unrolled) gives the losses of the notebook's loop
    written here over f_grad."""
    program = program_of((EXAMPLES / "seed_mlp.exg").read_text(), "seed_mlp.exg")
    result = exprgrad.train(program, steps=30, lr=0.04)
    mod = exprgrad.load(EXAMPLES / "seed_mlp.exg")
    xs = program.data["xs"]
    ys = program.data["ys"]
    params = mod.init_params(0)
    losses = []
    for _ in range(30):
        total, g = 0.0, [0.0] * len(params)
        for x, y in zip(xs, ys):
            value, grad = mod.loss_grad(params, x, y)
            total += value
            g = [a + b for a, b in zip(g, grad)]
        losses.append(total)
        params = [p - 0.04 * d for p, d in zip(params, g)]
    assert _close(result.losses, losses, 1e-12)
    assert _close(result.params, params, 1e-12)
    # minibatches of a mean loss go through the looped step with scale = 1/batch
    mean = exprgrad.train(program, steps=5, lr=0.04, batch_size=3, reduce="mean",
                          optimizer="adam")
    assert len(mean.losses) == 5 and all(math.isfinite(v) for v in mean.losses)


def test_a_non_finite_update_stops_training_and_keeps_the_last_good_parameters() -> None:
    source = ("param w = 1.0\ndef loss(x):\n    return exp(w * x)\n"
              "data xs = [709.0, 1.0]\ntrain loss(xs): lr=1.0, steps=5\n")
    program = program_of(source, "blow.exg")
    result = exprgrad.train(program)
    assert result.stopped and result.stopped.startswith("step 1:")
    assert "not finite" in result.stopped
    assert result.params == [1.0] and result.losses == []


def test_a_def_may_not_take_a_generated_step_name() -> None:
    with pytest.raises(ExprgradError, match="generated step"):
        program_of("def f(x):\n    return x\ndef f_step(x):\n    return x\n", "n.exg")


def test_compiled_files_carry_the_train_statements_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = (EXAMPLES / "seed_mlp.exg").read_text().replace("optimizer=sgd", "optimizer=adam")
    (tmp_path / "a.exg").write_text(src)
    result = run_cli("compile", str(tmp_path / "a.exg"))
    assert result.returncode == 0, result.stderr
    for name in ("loss_step", "loss_step_adam", "loss_step_unrolled", "loss_step_adam_unrolled",
                 "loss_step_data", "loss_step_adam_data"):
        assert f"\ndef {name}(" in result.stdout
    assert "loss_step_momentum" not in result.stdout
    # data read from a CSV file at training time: no batch size is known, nothing is unrolled
    (tmp_path / "b.exg").write_text("net n = MLP(2, [3, 1])\ndef loss(x[2], y):\n"
                                    "    return (n(x) - y) ** 2\n")
    result = run_cli("compile", str(tmp_path / "b.exg"))
    assert "\ndef loss_step(" in result.stdout and "_unrolled" not in result.stdout
    assert "_data" not in result.stdout


def test_training_with_a_module_made_for_other_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A module compiled for the file's train statement (sgd, unrolled for its 4 examples) still
    trains with another optimizer and on data of another size, with the right numbers."""
    from exprgrad.run.training import train

    source = (EXAMPLES / "seed_mlp.exg").read_text()
    program = program_of(source, "seed_mlp.exg")
    module = exprgrad.load_source(source, "seed_mlp.exg")
    assert module.UNROLLED == {"loss": 4} and "step_adam" not in module.ENTRY_POINTS["loss"]
    csv = tmp_path / "three.csv"
    csv.write_text("x0,x1,x2,y\n2,3,-1,1\n3,-1,0.5,-1\n0.5,1,1,-1\n")
    config = exprgrad.run.config.config_from_program(program)
    config.steps = 3
    three = train(program, config=config, csv_path=str(csv), module=module)
    fresh = train(program, config=config, csv_path=str(csv))
    assert three.losses == fresh.losses and len(three.losses) == 3
    config.optimizer = "adam"
    adam = train(program, config=config, module=module)
    assert adam.losses == train(program, config=config).losses


@pytest.mark.parametrize("optimizer", sorted(SETTINGS))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_numpy_steps_apply_the_same_update(name: str, optimizer: str) -> None:
    """The numpy backend's steps (the update on whole arrays) against the same reference."""
    import numpy as np

    from exprgrad.emit.arrays import generate_numpy

    program = program_of(PROGRAMS[name], f"{name}.exg")
    scalar = module_from_code(generate(program), name, f"<{name}>")
    batched = module_from_code(generate_numpy(program, steps=(optimizer,)), name, f"<{name}>")
    step = entry_point(batched, "loss", {"sgd": "step"}.get(optimizer, f"step_{optimizer}"))
    rng = random.Random(f"np{name}{optimizer}")
    params = scalar.init_params(5)
    state = [[0.0] * len(params) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[optimizer])]
    for t in range(1, 4):
        cols = _batch(name, 6, rng)
        scale = 1.0 if t != 2 else 1.0 / 6
        counter = [t] if optimizer == "adam" else []
        want_loss, want, want_state = _reference(scalar, optimizer, params, state, t, cols, scale)
        loss, new, *new_state = step(np.asarray(params), *map(np.asarray, state), *counter,
                                     *map(np.asarray, cols), *SETTINGS[optimizer].values(),
                                     scale)
        assert math.isclose(loss, want_loss, rel_tol=1e-12)
        assert _close(list(new), want, 1e-10)
        assert len(new_state) == len(want_state)
        assert all(_close(list(a), b, 1e-10) for a, b in zip(new_state, want_state))
        assert isinstance(new, np.ndarray) and new is not params
        params, state = want, want_state
    f32 = module_from_code(generate_numpy(program, steps=(optimizer,), dtype="float32"), name,
                           f"<{name}>")
    out = entry_point(f32, "loss", {"sgd": "step"}.get(optimizer, f"step_{optimizer}"))(
        np.asarray(params, np.float32), *(np.asarray(s, np.float32) for s in state), *counter,
        *map(np.asarray, _batch(name, 6, rng)), *SETTINGS[optimizer].values(), 0.5)
    assert {str(a.dtype) for a in out} == {"float32"}


@pytest.mark.parametrize("optimizer", sorted(SETTINGS))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_step_specialised_to_the_data_equals_the_step_given_the_data(name: str,
                                                                      optimizer: str) -> None:
    """f_step_data (the examples' numbers written in as constants) computes exactly what the
    unrolled step computes when handed those examples."""
    from exprgrad.run.training import flat_examples

    cols = _batch(name, 3, random.Random(f"d{name}"))
    cols[0][1] = [[0.0, 1.0], [-1.0, 0.0]] if name == "mixed" else cols[0][1]  # zeros and ones
    program = program_of(PROGRAMS[name], f"{name}.exg")
    data = ("loss", flat_examples([list(ex) for ex in zip(*cols)]))
    mod = module_from_code(generate(program, steps=(optimizer,), unroll=3, data=data), name,
                           f"<{name}>")
    kind = {"sgd": "step"}.get(optimizer, f"step_{optimizer}")
    given, specialised = (entry_point(mod, "loss", kind + "_unrolled"),
                          entry_point(mod, "loss", kind + "_data"))
    params = mod.init_params(2)
    state = [[0.5] * len(params) for _ in range({"sgd": 0, "momentum": 1, "adam": 2}[optimizer])]
    counter = [1] if optimizer == "adam" else []
    settings = list(SETTINGS[optimizer].values())
    assert specialised(params, *state, *counter, *settings, 0.25) == \
        given(params, *state, *counter, *cols, *settings, 0.25)


def test_a_zero_in_the_data_is_no_strong_zero() -> None:
    """inf * 0 is nan in the step specialised to data with a 0 in it, as in every other step."""
    from exprgrad.run.training import flat_examples

    program = program_of("param w = 1.0\ndef loss(x):\n    return (w * x) ** 2\n", "z.exg")
    mod = module_from_code(generate(program, unroll=2, data=("loss", flat_examples(
        [[0.0], [0.0]]))), "z", "<z>")
    loss, new = mod.loss_step_data([math.inf], 0.1)
    want_loss, want_new = mod.loss_step_unrolled([math.inf], [0.0, 0.0], 0.1)
    assert math.isnan(loss) and math.isnan(want_loss) and math.isnan(new[0])


def test_a_batch_whose_arguments_differ_in_length_is_refused() -> None:
    """zip would train on the shortest argument; numpy would broadcast one value over the
    batch: both are errors instead."""
    import numpy as np

    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0]]
    ys = [1.0, -1.0, -1.0]
    scalar = exprgrad.load(EXAMPLES / "seed_mlp.exg")
    params = scalar.init_params(0)
    for call in (lambda: scalar.loss_step(params, xs, ys[:2], 0.1),
                 lambda: scalar.loss_grad_sum(params, xs[:2], ys)):
        with pytest.raises(ValueError):
            call()
    batched = exprgrad.load(EXAMPLES / "seed_mlp.exg", backend="numpy")
    for y in ([1.0], 1.0, ys[:2], [[1.0]] * 3):
        with pytest.raises(ValueError, match="per example"):
            batched.loss_step(params, xs, y, 0.1)
    with pytest.raises(ValueError, match="per example"):
        batched.loss(params, np.asarray(xs)[:, :2], ys)
    assert math.isclose(batched.loss_step(params, xs, ys, 0.1)[0],
                        scalar.loss_step(params, xs, ys, 0.1)[0], rel_tol=1e-12)


def test_float32_steps_stay_float32_with_numpy_scalar_settings() -> None:
    import numpy as np

    from exprgrad.emit.arrays import generate_numpy

    mod = exprgrad.load(EXAMPLES / "seed_mlp.exg", backend="numpy", dtype="float32")
    program = program_of((EXAMPLES / "seed_mlp.exg").read_text(), "s.exg")
    mod_adam = module_from_code(generate_numpy(program, dtype="float32", steps=("adam",)), "a",
                                "<a>")
    p = np.asarray(mod.init_params(0), np.float32)
    xs, ys = [[2.0, 3.0, -1.0], [0.5, 1.0, 1.0]], [1.0, -1.0]
    _, new = mod.loss_step(p, xs, ys, np.float64(0.1), np.float64(0.5))
    assert new.dtype == np.float32
    z = np.zeros_like(p)
    out = mod_adam.loss_step_adam(p, z, z, np.int64(1), xs, ys, np.float64(0.01), 0.9, 0.999,
                                  np.float64(1e-8))
    assert [a.dtype for a in out[1:]] == [np.float32] * 3


@pytest.mark.parametrize("setting", ["beta1=1.0", "beta2=1.5", "momentum=-0.1", "eps=0",
                                     "eps=-1e-8", "momentum=1.0"])
def test_optimizer_settings_out_of_range_are_refused(tmp_path, setting: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s.exg").write_text("param w = 1.0\ndef loss(x):\n    return (w * x) ** 2\n"
                                    f"data xs = [1.0, 2.0]\ntrain loss(xs): {setting}\n")
    result = run_cli("train", str(tmp_path / "s.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{setting.split('=')[0]} must be" in result.stderr and "^" in result.stderr


def test_float32_data_that_does_not_fit_is_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f.exg").write_text("param w = 1.0\ndef loss(x):\n    return (w * x) ** 2\n"
                                    "data xs = [1.0, 1e39]\n"
                                    "train loss(xs): backend=numpy, dtype=float32\n")
    result = run_cli("train", str(tmp_path / "f.exg"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "example 1" in result.stderr and "does not fit float32" in result.stderr
    assert "RuntimeWarning" not in result.stderr


def test_a_loss_of_no_arguments_trains(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "z.exg").write_text("param w = 2.0\ndef loss():\n    return (w - 1) ** 2\n"
                                    "train loss(): lr=0.25, steps=3\n")
    result = run_cli("train", str(tmp_path / "z.exg"), "--json")
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    # w: 2 -> 1.5 -> 1.25 -> 1.125 (gradient 2(w - 1), lr 1/4), so the losses are 1, 1/4, 1/16
    assert summary["first_loss"] == 1.0 and summary["final_loss"] == 0.125 ** 2


def test_auto_picks_numpy_for_float32_and_for_large_networks() -> None:
    small = ("net n = MLP(2, [3, 1])\ndef loss(x[2], y):\n    return (n(x) - y) ** 2\n"
             "data xs = [[1.0, 2.0], [0.5, -1.0]]\ndata ys = [1.0, -1.0]\n"
             "train loss(xs, ys): steps=2\n")
    def trained(text: str, **settings: object) -> object:
        return exprgrad.train(program_of(text, "auto.exg"), progress=False, **settings)

    assert trained(small).backend == "python"
    result = trained(small, dtype="float32")
    assert (result.backend, result.dtype) == ("numpy", "float32")
    large = small.replace("MLP(2, [3, 1])", "MLP(2, [60, 30, 1])")  # 2,071 parameters
    assert trained(large).backend == "numpy"


@pytest.mark.parametrize("backend", ["python", "numpy"])
def test_an_adam_state_that_overflows_stops_training(backend: str) -> None:
    """g = 1e160 is finite, g * g is not: adam's v is inf and would freeze the parameter."""
    source = ("param w = 1.0\ndef loss(x):\n    return w * x\ndata xs = [1e160]\n"
              "train loss(xs): optimizer=adam, steps=3\n")
    result = exprgrad.train(program_of(source, "o.exg"), backend=backend, progress=False)
    assert result.stopped and "adam state is not finite" in result.stopped
    assert result.params == [1.0] and result.losses == []


def test_an_initializer_that_would_draw_infinities_is_refused() -> None:
    with pytest.raises(ExprgradError, match="infinite values"):
        program_of("param w = uniform(-1e308, 1e308)\ndef f(x):\n    return w * x\n", "u.exg")
