"""The `exprgrad check` command: every gradient of a file against sympy and central differences.

Contract: :func:`check_program` returns the :class:`Report` (also ``exprgrad.check``);
``check_program_cli(args)`` prints a line per comparison (or JSON) and returns 0 when
every check passed; 1 on a mismatch, or when a partial derivative (a rule, a Hessian entry) was
checked by no method at all ("not checked", listed with the reason).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence

from ..emit.arrays import check_dtype
from ..emit.build import module_of
from ..errors import CheckFailure, ExprgradValueError
from ..gradcheck.checker import Budget, Report, check_function, check_hessian, check_rules
from ..ir.program import Program
from ..lower.lowering import program_of

#: the hint of a scalar limit when checking: the checker calls the scalar backend's code
CHECK_HINT = "check a smaller program: 'exprgrad check' runs the scalar backend's code"


def check_program(program: Program, functions: Sequence[str] = (), *, budget: float = 60.0,
                  seed: int = 0, hessian: bool = False, dtype: str = "float64") -> Report:
    """Every gradient of the named defs (all by default) against sympy and central
    differences, within ``budget`` seconds of sympy work; the Report's ``ok`` is False on a
    mismatch or a partial no method could check. ``dtype="float32"``: the float32 numpy
    module's gradients too, against the same float64 central differences."""
    check_dtype(dtype)
    if not (math.isfinite(budget) and 0 < budget <= 1e6):
        raise ExprgradValueError(f"--budget {budget:g}: the time budget is a positive number "
                                 "of seconds, at most 1000000")
    names = list(functions) or list(program.functions)
    for name in names:
        if name not in program.functions:
            raise ExprgradValueError(f"{program.filename} has no function '{name}'")
    fns = [program.functions[n] for n in dict.fromkeys(names)]
    module = module_of(program, fns, ("value", "grad"), hint=CHECK_HINT)
    float32 = None if dtype == "float64" else module_of(program, fns, ("value", "grad"),
                                                        "numpy", dtype=dtype)
    spent = Budget(budget)
    report = Report()
    for name in names:
        report.lines.extend(check_rules(program, name, spent, seed))
        sub = check_function(program, module, name, budget=spent, seed=seed, float32=float32)
        report.lines.extend(sub.lines)
        report.notes.extend(sub.notes)
        if hessian:
            report.lines.extend(check_hessian(program, name, spent, seed))
    return report


def check_program_cli(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.budget) and 0 < args.budget <= 1e6):
        raise ExprgradValueError(f"--budget {args.budget:g}: the time budget is a positive number "
                                 "of seconds, at most 1000000")
    program = program_of(args.file)
    start = time.perf_counter()
    report = check_program(program, args.functions, budget=args.budget, seed=args.seed,
                           hessian=args.hessian, dtype=args.dtype)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({
            "file": args.file, "ok": report.ok, "seconds": round(seconds, 3),
            "results": [{"function": x.function, "partial": x.partial, "status": x.status,
                         "method": x.method, "detail": x.detail,
                         "line": x.span.line if x.span else None} for x in report.lines],
            "not_checked": report.unchecked, "notes": report.notes}))
    else:
        for line in report.lines:
            print(line.text())
        for note in report.notes:
            print(f"note: {note}")
        bad = sum(1 for x in report.lines if x.status == "mismatch")
        skipped = sum(1 for x in report.lines if x.status == "skipped")
        counts = {m: sum(1 for x in report.lines if x.method.startswith(m))
                  for m in ("symbolic", "numeric", "finite-diff", "float32", "rule", "hessian")}
        summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        not_checked = f", {skipped} not checked" if skipped else ""
        print(f"{len(report.lines) - bad - skipped} ok, {bad} mismatched{not_checked} ({summary}) "
              f"in {seconds:.1f}s")
    if not report.ok:
        first = next((x for x in report.lines if x.status == "mismatch"), None)
        if first is None:  # nothing wrong was found, but not everything could be checked
            if not args.json:
                print(f"check incomplete: {len(report.unchecked)} not checked by any method: "
                      + ", ".join(report.unchecked[:10])
                      + (" ..." if len(report.unchecked) > 10 else ""))
            return 1
        if first.span is not None:
            err = CheckFailure(f"wrong derivative rule for '{first.partial}' in "
                               f"'{first.function}'", first.span, hint=first.detail)
            err.with_source(args.file, program.source)
            if not args.json:
                print(err.render())
        return 1
    return 0
