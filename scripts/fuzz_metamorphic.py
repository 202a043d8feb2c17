#!/usr/bin/env python3
"""Run the metamorphic property of tests/test_metamorphic.py on many more programs.

Renaming any identifier (to Python builtins, names generated code uses, names built from the
program's other names) or reordering independent declarations must change neither backend's
values nor gradients; the backends must agree with each other and the scalar gradient with
finite differences. See tests/test_metamorphic.py for the generator and the checks.

    .venv/bin/python scripts/fuzz_metamorphic.py --cases 5000
    .venv/bin/python scripts/fuzz_metamorphic.py --cases 2000 --kind reorder --seed 7
    .venv/bin/python scripts/fuzz_metamorphic.py --case 123 --seed 7     # replay one case
    .venv/bin/python scripts/fuzz_metamorphic.py --hypothesis --cases 2000

The default mode draws cases from a plain random generator (seeded: the same --seed gives the
same cases), keeps going after a failure, groups the failures by kind and prints, per group, how
often it happened and its smallest case, shrunk greedily (deleting declarations, defs,
statements, return values, simplifying subexpressions and undoing renamings while the same kind
of failure persists; --no-shrink skips that). --hypothesis runs hypothesis's own search and
shrinking instead (it stops generating at the first failure). Exit status: 0 when every case
passed, 1 when some failed.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
try:
    import exprgrad  # noqa: F401 - the installed (or PYTHONPATH's) exprgrad
except ImportError:
    sys.path.append(str(ROOT))

import test_metamorphic as tm  # noqa: E402


def draw_spec(kind: str, rng: random.Random) -> tm.Spec:
    return tm.draw_spec(kind, tm.RandomDrawer(rng))


def case_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"exprgrad-metamorphic:{seed}:{index}")


def kind_of(args: argparse.Namespace, index: int) -> str:
    if args.kind == "both":
        return "rename" if index % 3 else "reorder"
    return str(args.kind)


def outcome(spec: tm.Spec, fd: bool) -> tuple[str, BaseException | None]:
    return tm.outcome(spec.case(), fd)


def _size(spec: tm.Spec) -> int:
    case = spec.case()
    return len(case.original) + len(case.variant)


# ---- modes ------------------------------------------------------------------------------------


def run_random(args: argparse.Namespace) -> int:
    groups: dict[str, list[tuple[int, tm.Spec, BaseException]]] = {}
    counts = {"pass": 0, "refused": 0}
    start = time.monotonic()
    refusals: dict[str, int] = {}
    for i in range(args.cases):
        spec = draw_spec(kind_of(args, i), case_rng(args.seed, i))
        sig, err = outcome(spec, not args.no_fd)
        if sig in counts:
            counts[sig] += 1
            if sig == "refused":
                key = re.sub(r"'[^']*'", "'?'", str(err).splitlines()[0])
                key = re.sub(r"^\S*:\d+:\d+: |\s*\(line \d+\)", "", key)[:100]
                refusals[key] = refusals.get(key, 0) + 1
        else:
            assert err is not None
            groups.setdefault(sig, []).append((i, spec, err))
        if args.progress and (i + 1) % args.progress == 0:
            failed = sum(len(g) for g in groups.values())
            print(f"  {i + 1}/{args.cases} cases, {failed} failed, {counts['refused']} refused, "
                  f"{time.monotonic() - start:.0f}s", file=sys.stderr)
    elapsed = time.monotonic() - start
    failed = sum(len(g) for g in groups.values())
    print(f"{args.cases} cases ({args.kind}, seed {args.seed}) in {elapsed:.1f}s: "
          f"{counts['pass']} passed, {failed} failed, {counts['refused']} refused by the frontend")
    for key, n in sorted(refusals.items(), key=lambda kv: -kv[1]):
        print(f"  refused {n}x: {key}")
    for sig, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n=== {len(items)}x {sig}")
        index, spec, err = min(items, key=lambda it: _size(it[1]))
        if not args.no_shrink:
            spec = tm.shrink(spec, sig, args.shrink_seconds, not args.no_fd)
            _, err2 = outcome(spec, not args.no_fd)
            err = err2 or err
        print(f"(smallest: --case {index} --seed {args.seed}"
              f"{'' if args.no_shrink else ', shrunk'})")
        print(str(err))
    return 1 if groups else 0


def run_one(args: argparse.Namespace) -> int:
    spec = draw_spec(kind_of(args, args.case), case_rng(args.seed, args.case))
    print(repr(spec.case()))
    sig, err = outcome(spec, not args.no_fd)
    print(f"outcome: {sig}")
    if err is not None:
        print(str(err))
    return 0 if sig in ("pass", "refused") else 1


def run_hypothesis(args: argparse.Namespace) -> int:
    from hypothesis import HealthCheck, given, reject, seed, settings

    strategies = {"rename": tm.rename_cases(), "reorder": tm.reorder_cases()}
    kinds = ["rename", "reorder"] if args.kind == "both" else [args.kind]
    status = 0
    for kind in kinds:
        @seed(args.seed)
        @settings(max_examples=args.cases, deadline=None, database=None,
                  report_multiple_bugs=True, print_blob=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategies[kind])
        def prop(case: tm.Case) -> None:
            try:
                tm.check_case(case, fd=not args.no_fd)
            except tm.Refused:
                reject()

        start = time.monotonic()
        try:
            prop()
            print(f"{kind}: {args.cases} examples passed in {time.monotonic() - start:.1f}s")
        except BaseException as err:  # noqa: B036 - an ExceptionGroup of several bugs, too
            status = 1
            errors = list(getattr(err, "exceptions", [err]))
            print(f"{kind}: {len(errors)} distinct failure(s) after "
                  f"{time.monotonic() - start:.1f}s")
            for e in errors:
                print(f"\n=== {tm.signature(e)}\n{e}")
                for line in getattr(e, "__notes__", []):
                    print(line)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="how many programs (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=["rename", "reorder", "both"], default="both",
                        help="which property (default both: two renamings per reordering)")
    parser.add_argument("--case", type=int, default=None, help="replay case N of --seed")
    parser.add_argument("--no-fd", action="store_true", help="skip the finite differences")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--shrink-seconds", type=float, default=60.0,
                        help="time budget per failure group (default 60)")
    parser.add_argument("--progress", type=int, default=500, help="report every N cases (0: never)")
    parser.add_argument("--hypothesis", action="store_true",
                        help="use hypothesis's search and shrinking instead")
    args = parser.parse_args(argv)
    if args.case is not None:
        return run_one(args)
    if args.hypothesis:
        return run_hypothesis(args)
    return run_random(args)


if __name__ == "__main__":
    sys.exit(main())
