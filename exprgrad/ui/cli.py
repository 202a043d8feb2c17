"""The `exprgrad` command.

Contract: ``main(argv)`` returns the exit code: 0 success; 1 a check or a run found a problem
(a wrong gradient, a diverged loss); 2 bad input or usage, reported as ``file:line:col: message``
with the source line and a caret, never a Python traceback (an ``OSError``, such as a full disk
or a directory it may not write, is one line ``PATH: error: REASON``, also 2); 70 (EX_SOFTWARE) a
bug in exprgrad itself (any other exception, and an ``UnsafeCodeError``: see
:func:`exprgrad.errors.is_bug`), reported by :func:`exprgrad.errors.bug_report` as a bug, with the
versions, the command line and the traceback; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from ..errors import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    CheckFailure,
    ExprgradError,
    ExprgradValueError,
    bug_report,
    is_bug,
    system_error_message,
)
from ..version import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"exprgrad: error: {message}", file=sys.stderr)
        if message.startswith("unrecognized arguments") and any(
                word.lower().endswith((".csv", ".parquet", ".pq")) for word in message.split()):
            print("hint: quote a --data pattern ('part-*.csv') so that exprgrad expands it, "
                  "not the shell", file=sys.stderr)
        raise SystemExit(2)


def _program(path: str):  # type: ignore[no-untyped-def]
    from ..lower.lowering import program_of

    return program_of(path)


def cmd_examples(args: argparse.Namespace) -> int:
    from .examples import copy_examples

    return copy_examples(args.folder)


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_cli

    return plot_cli(args)


def cmd_compile(args: argparse.Namespace) -> int:
    from ..emit.arrays import check_dtype
    from ..emit.scalar import generate
    from ..lower.lowering import compile_program, read_source
    from ..run.files import check_output, write_output
    from ..run.training import module_steps

    if args.hessian and args.backend == "numpy":
        raise ExprgradValueError("--hessian is for the python backend: the numpy backend writes "
                                 "no f_hess", hint="compile with --backend python (the default)")
    check_dtype(args.dtype, args.backend)
    if args.output not in (None, "-"):
        check_output(args.output, force=args.force)  # before any work
    program = compile_program(read_source(args.file), args.file)
    steps, unroll, data = module_steps(program)
    if args.backend == "numpy":
        from ..emit.arrays import generate_numpy

        code = generate_numpy(program, verify=not args.no_verify, dtype=args.dtype,
                              steps=steps)
    else:
        code = generate(program, hessians=args.hessian, verify=not args.no_verify, steps=steps,
                        unroll=unroll, data=data)
    if args.output in (None, "-"):
        sys.stdout.write(code)
    else:
        write_output(args.output, code, force=args.force)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..emit.build import module_of
    from ..run.evaluate import evaluate, format_result, parse_assignments

    program = _program(args.file)
    if args.function not in program.functions:
        from ..lower.lowering import did_you_mean

        raise ExprgradValueError(f"{args.file} has no function '{args.function}'",
                                 hint=did_you_mean(args.function, list(program.functions))
                                 or f"functions: {', '.join(program.functions) or 'none'}")
    values = parse_assignments(args.values, program.functions[args.function])
    module = module_of(program, [program.functions[args.function]], ("grad",),
                       hint="evaluate a smaller program: 'exprgrad eval' runs the scalar "
                       "backend's code")
    params = None
    if args.params:
        from ..run.paramsio import load_params

        params = load_params(args.params, program)
    result = evaluate(program, module, args.function, values, params)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(format_result(result))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check_cmd import check_program_cli

    return check_program_cli(args)


def cmd_train(args: argparse.Namespace) -> int:
    from .train_cmd import train_cli

    return train_cli(args)


def cmd_predict(args: argparse.Namespace) -> int:
    from .train_cmd import predict_cli

    return predict_cli(args)


def cmd_graph(args: argparse.Namespace) -> int:
    from .drawing import graph_cli

    return graph_cli(args)


def cmd_repl(args: argparse.Namespace) -> int:
    from .repl import repl_main

    return repl_main(args.file)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="exprgrad", description="Compile .exg formulas and networks to "
                "straight-line Python forward and gradient code.",
                epilog="examples:\n  bash scripts/main.sh   (in a checkout: the seed network, "
                "compiled, trained and checked)\n  exprgrad examples ex && exprgrad train "
                "ex/seed_mlp.exg --plot loss.png\n  exprgrad eval ex/tour.exg g a=0.5 b=2\n"
                "  exprgrad check ex/tour.exg\n  exprgrad repl\n"
                "Each command's --help describes its options.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"exprgrad {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, summary: str, examples: list[str]) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:]
                              + ".", epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    c = command("compile", "compile a .exg file to a Python module",
                ["exprgrad compile examples/tour.exg -o tour.py",
                 "exprgrad compile examples/moons.exg --backend numpy -o moons.py",
                 "exprgrad compile examples/moons.exg --backend numpy --dtype float32"])
    c.add_argument("file", help="the .exg file")
    c.add_argument("-o", "--output", help="output .py file (default: standard output)")
    c.add_argument("--backend", choices=["python", "numpy"], default="python",
                   help="python: scalar code needing only math (default); numpy: batched arrays")
    c.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="the numpy backend's float type (default float64; float32 needs "
                   "--backend numpy)")
    c.add_argument("--hessian", action="store_true", help="also emit f_hess for scalar functions")
    c.add_argument("--force", action="store_true", help="overwrite a file exprgrad did not write")
    c.add_argument("--no-verify", action="store_true",
                   help="skip the allowlist check of the generated module (it costs about a "
                   "third of the compile time on very large programs)")
    c.set_defaults(run=cmd_compile)

    e = command("eval", "evaluate a function and its gradient",
                ["exprgrad eval examples/tour.exg g a=0.5 b=2",
                 "exprgrad eval examples/seed_net.exg predict 'x=[2,3,-1]' --json"])
    e.add_argument("file", help="the .exg file")
    e.add_argument("function", help="the def to evaluate")
    e.add_argument("values", nargs="*", metavar="NAME=VALUE",
                   help="every argument: a number, or a JSON list for a vector or matrix")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--params", help="parameters saved by `exprgrad train --save`")
    e.set_defaults(run=cmd_eval)

    k = command("check", "check every gradient against sympy and finite differences",
                ["exprgrad check examples/tour.exg", "exprgrad check examples/seed_mlp.exg loss "
                 "--budget 10"])
    k.add_argument("file", help="the .exg file")
    k.add_argument("functions", nargs="*", metavar="FUNC", help="the defs to check (default all)")
    k.add_argument("--json", action="store_true", help="print one JSON object per function")
    k.add_argument("--seed", type=int, default=0,
                   help="the seed of the random points and parameters checked (default 0)")
    k.add_argument("--budget", type=float, default=60.0,
                   help="seconds of sympy work for the whole run (default 60; at most 2 of them "
                   "per simplification); what it leaves unchecked is reported as 'not checked' "
                   "(finite differences always run)")
    k.add_argument("--hessian", action="store_true", help="also check Hessians")
    k.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="float32: also check the float32 numpy module's gradients against the "
                   "same float64 central differences (tolerance 1e-3)")
    k.set_defaults(run=cmd_check)

    t = command("train", "train a network as the file's 'train' statement says",
                ["exprgrad train examples/seed_mlp.exg --plot loss.png --save params.json",
                 "exprgrad train examples/moons.exg --steps 500 --optimizer adam --lr 0.01",
                 "exprgrad train model.exg --data 'part-*.csv' --batch-size 64 --epochs 5",
                 "exprgrad train model.exg --data data.parquet --scheduler tcp://HOST:8786"])
    t.add_argument("file", help="the .exg file, with a 'train' statement")
    t.add_argument("--steps", "--epochs", type=int, dest="steps",
                   help="number of steps (passes over the data: epochs)")
    t.add_argument("--lr", type=float, help="the learning rate")
    t.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], help="the update rule")
    t.add_argument("--seed", type=int, help="seed of the initial parameters and the shuffling")
    t.add_argument("--batch-size", type=int,
                   help="examples per update (0: the whole data set, the default)")
    t.add_argument("--reduce", choices=["sum", "mean"],
                   help="the batch loss: sum (the notebook's) or mean of the examples' losses")
    t.add_argument("--data", help="a CSV file to use instead of the file's data; a glob of CSV "
                   "or Parquet files ('part-*.csv', quoted), a .parquet file or a directory "
                   "trains in chunks through Dask (docs/language.md, 'Data larger than memory')")
    t.add_argument("--cols", help="the --data columns that fill the loss's arguments, in order: "
                   "0-based indices, ranges a:b, or header names, comma-separated (default: "
                   "every column)")
    t.add_argument("--chunked", action="store_true",
                   help="train on a single CSV file in chunks too, never holding it in memory")
    t.add_argument("--scheduler", metavar="ADDRESS",
                   help="train in chunks on the dask.distributed cluster at tcp://HOST:PORT "
                   "(default: Dask's local threads)")
    t.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the --scheduler (default 10)")
    t.add_argument("--blocksize", help="the largest block of a CSV file read at once in chunked "
                   "training, e.g. 32MiB (the default) or 1000000")
    t.add_argument("--backend", choices=["python", "numpy", "auto"], default=None,
                   help="auto (default): numpy for batches of 32 examples or more")
    t.add_argument("--dtype", choices=["float64", "float32"], default=None,
                   help="float type of the parameters, data and arithmetic (default float64; "
                   "float32 needs the numpy backend)")
    t.add_argument("--save", help="write the trained parameters to this JSON file")
    t.add_argument("--load", help="start from parameters saved by --save")
    t.add_argument("--plot", help="draw the loss curve to this .png, .svg or .pdf file")
    t.add_argument("--json", action="store_true", help="print one summary object")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--force", action="store_true",
                   help="replace --save/--plot files exprgrad did not write")
    t.set_defaults(run=cmd_train)

    r = command("predict", "apply trained parameters to data",
                ["exprgrad predict examples/seed_mlp.exg --params params.json"])
    r.add_argument("file", help="the .exg file the parameters were trained with")
    r.add_argument("--params", required=True, help="parameters saved by `exprgrad train --save`")
    r.add_argument("--data", help="a CSV file of inputs (default: the file's training data)")
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.set_defaults(run=cmd_predict)

    x = command("examples", "copy the example .exg files (and their data) into a folder",
                ["exprgrad examples my-examples && exprgrad train my-examples/moons.exg"])
    x.add_argument("folder", help="where to copy them (created; existing files are kept)")
    x.set_defaults(run=cmd_examples)

    g = command("graph", "draw the forward (and backward) graph with Graphviz",
                ["exprgrad graph examples/seed_graph.exg neuron --at x1=2 x2=0 w1=-3 w2=1 "
                 "-o neuron.svg", "exprgrad graph examples/seed_mlp.exg loss --collapse -o net.png",
                 "exprgrad graph examples/seed_mlp.exg loss --params params.json --at "
                 "'x=[2,3,-1]' y=1 -o trained.svg"])
    g.add_argument("file", help="the .exg file")
    g.add_argument("function", nargs="?", help="the function to draw (default: the first; "
                   "with several, a note on stderr names the one drawn)")
    g.add_argument("--at", nargs="*", default=[], metavar="NAME=VALUE",
                   help="show each value and its gradient at these arguments (the function's "
                   "name may also follow them)")
    g.add_argument("--params", help="parameters saved by `exprgrad train --save` (default: the "
                   "initial ones, seed 0)")
    g.add_argument("--backward", action="store_true", help="draw the gradient program too")
    g.add_argument("--collapse", action="store_true", help="one box per network layer")
    g.add_argument("-o", "--output", required=True, help="OUT.svg, .png, .pdf or .dot")
    g.add_argument("--force", action="store_true", help="replace a file exprgrad did not write")
    g.set_defaults(run=cmd_graph)

    f = sub.add_parser(
        "plot", help="draw a function and its derivatives (matplotlib)",
        description="Draw a scalar function of the file over one ranged argument (the function "
        "and every partial derivative, in two panels) or two (filled contours with the gradient "
        "as arrows); the other arguments are fixed.",
        epilog="examples:\n  exprgrad plot examples/tour.exg g a=-3:3 b=0.5 -o g.png\n"
        "  exprgrad plot examples/tour.exg f x=-2:2 y=-2:2 -o f.svg",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("file", help="the .exg file")
    f.add_argument("function", help="the def to draw")
    f.add_argument("values", nargs="+", metavar="NAME=LO:HI|NAME=VALUE",
                   help="a range for one or two scalar arguments, a value for every other")
    f.add_argument("-o", "--output", required=True, help="OUT.png, .svg or .pdf")
    f.add_argument("--points", type=int, default=0,
                   help="points along each range, 2 to 2000 (default 401 for a curve, 61 per "
                   "axis for a contour)")
    f.add_argument("--params", help="parameters saved by `exprgrad train --save`")
    f.add_argument("--force", action="store_true", help="replace a file exprgrad did not write")
    f.set_defaults(run=cmd_plot)

    q = command("repl", "an interactive session: the notebook, on compiled code",
                ["exprgrad repl", "exprgrad repl examples/seed_mlp.exg", "exprgrad repl < "
                 "script.txt"])
    q.add_argument("file", nargs="?", help="a .exg file to load first")
    q.set_defaults(run=cmd_repl)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as err:  # every other exception: a user's mistake, the system's, or a bug
        try:
            return report(err, ["exprgrad", *argv])
        except OSError:  # stderr itself is gone (a closed pipe): the exit code still tells
            return EXIT_BUG if is_bug(err) else (
                EXIT_PROBLEM if isinstance(err, CheckFailure) else EXIT_USAGE)


def report(err: Exception, command: Sequence[str]) -> int:
    """Print what went wrong for ``err`` and return the exit code (see the module docstring)."""
    if isinstance(err, ExprgradError) and not is_bug(err):
        print(err.render(), file=sys.stderr)
        return EXIT_PROBLEM if isinstance(err, CheckFailure) else EXIT_USAGE
    if isinstance(err, OSError):
        print(system_error_message(err), file=sys.stderr)
        return EXIT_USAGE
    try:
        text = bug_report(err, command)
    except Exception:  # the report itself failed: still say it is a bug, and show both
        import traceback

        text = "exprgrad: internal error: this is a bug in exprgrad\n" + traceback.format_exc()
    print(text, file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
