"""Run the whole-file fuzzer of tests/test_file_fuzz.py on many more cases.

    python scripts/fuzz_files.py [--cases N] [--seed S]

Prints the outcome counts; stops at the first case that is neither a compiled module nor a
user's error (an internal error, another exception or a hang) and prints it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_file_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        counts = test_file_fuzz.run(args.cases, args.seed)
    except AssertionError as err:
        print(f"FAILED: {err}")
        return 1
    print(f"{args.cases} cases (seed {args.seed}) in {time.perf_counter() - start:.0f}s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
