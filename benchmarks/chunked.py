"""In-memory against chunked training (Dask's threads, and a LocalCluster of two workers): time
per epoch and peak memory, on digits and on a synthetic regression of 10^5 and 10^6 rows.

    python benchmarks/chunked.py [--rows 100000,1000000] [--epochs 3] [--workdir DIR]
                                 [--json OUT] [--quick]

Workloads:
- digits: MLP(64, [32, 10]) with softmax cross-entropy on scikit-learn's 1,797 digits (the
  ``bench`` extra; without scikit-learn, random data of the same size), 20 full-batch SGD steps;
  the data in 4 CSV files.
- regression: MLP(10, [16, 1]), squared error, mean over the examples, on y = sin(x0) + x1 x2
  + noise, in CSV files of 50,000 rows each (2 files for 10^5 rows, 20 for 10^6; the same
  in Parquet), full-batch SGD; and Adam on minibatches of 1,024.

Every configuration runs in a process of its own, started by a launcher that never holds
data, and reports its peak resident memory (``resource.getrusage``; for the cluster also the
largest worker's, from its ``/proc/self/status``: see ``_worker_peak``). A configuration's
first step's loss must equal in-memory training's (1e-9 relative) or it is reported FAILED
and the script exits 1. Wall-clock times; BLAS on one thread; the machine's 2 cores are
shared by Dask's two threads (or the two workers, and the scheduler).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS_PER_FILE = 50_000
PROGRAMS = {
    "digits": ("net n = MLP(64, [32, 10], out=linear)\n"
               "def loss(x[64], y[10]):\n    z = n(x)\n    return logsumexp(z) - dot(y, z)\n"
               "train loss(): optimizer=sgd, lr=0.001, reduce=sum, seed=0\n"),
    "regression": ("net n = MLP(10, [16, 1])\n"
                   "def loss(x[10], y):\n    return (n(x) - y) ** 2\n"
                   "train loss(): optimizer=sgd, lr=0.05, reduce=mean, seed=0\n"),
}


def _write_parts(folder: Path, table: Any, rows_per_file: int, header: list[str]) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for k, lo in enumerate(range(0, len(table), rows_per_file), 1):
        part = pd.DataFrame(table[lo:lo + rows_per_file], columns=header)
        part.to_csv(folder / f"part-{k:03d}.csv", index=False, float_format="%.17g")
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                       folder / f"part-{k:03d}.parquet", row_group_size=rows_per_file)
    (folder / "done").write_text("")


def make_data(workdir: Path, rows: list[int]) -> dict[str, Path]:
    """The data folders (made once; kept in ``workdir``)."""
    import numpy as np

    out = {}
    digits = workdir / "digits"
    if not (digits / "done").exists():
        try:
            from sklearn.datasets import load_digits  # the bundled copy: no download

            d = load_digits()
            x, labels = d.data / 16.0, d.target
        except ImportError:
            print("(scikit-learn is not installed: random digits-size data)", file=sys.stderr)
            rng = np.random.default_rng(0)
            x, labels = rng.random((1797, 64)), rng.integers(0, 10, 1797)
        table = np.column_stack([x, np.eye(10)[labels]])
        _write_parts(digits, table, 450, [f"p{i}" for i in range(64)] +
                     [f"y{i}" for i in range(10)])
    out["digits"] = digits
    for n in rows:
        folder = workdir / f"regression-{n}"
        if not (folder / "done").exists():
            rng = np.random.default_rng(n)
            x = rng.normal(size=(n, 10))
            y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.normal(size=n)
            _write_parts(folder, np.column_stack([x, y]), ROWS_PER_FILE,
                         [f"x{i}" for i in range(10)] + ["y"])
        out[f"regression-{n}"] = folder
    return out


# ---- one configuration, in a process of its own ---------------------------------------------

def child(spec: dict[str, Any]) -> dict[str, Any]:
    from exprgrad.lower.lowering import compile_program
    from exprgrad.run.config import config_from_program

    program = compile_program(PROGRAMS[spec["program"]], f"{spec['program']}.exg")
    config = config_from_program(program)
    config.steps = spec["epochs"]
    config.backend = "numpy"
    if spec.get("batch"):
        config.optimizer, config.lr, config.batch_size = "adam", 0.01, spec["batch"]
    fn = program.functions["loss"]
    pattern = str(Path(spec["folder"]) / f"part-*.{spec.get('format', 'csv')}")
    start = time.perf_counter()
    if spec["mode"] == "memory":
        import glob

        import numpy as np
        import pandas as pd

        from exprgrad.run.training import train

        files = sorted(glob.glob(pattern))
        table = np.concatenate([pd.read_csv(f).to_numpy() for f in files])
        width = fn.arg_shapes[0][0]
        # the examples as exprgrad.train takes them: one argument list per example
        examples = [[r[:width].tolist(), r[width:].tolist() if len(r) - width > 1
                     else float(r[width])] for r in table]
        del table
        setup = time.perf_counter() - start
        result = train(program, config=config, examples=examples)
        extra: dict[str, Any] = {}
    else:
        workers = None
        from exprgrad.run.chunked import ChunkedData, connect, open_source, train_chunked

        cluster = None
        if spec["mode"] == "cluster":
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        try:
            with connect(cluster.scheduler_address if cluster else None) as client:
                source = open_source(pattern, fn)
                data = ChunkedData(source, fn, client)
                setup = time.perf_counter() - start
                result = train_chunked(program, data, config=config)
                if client is not None:  # each worker's own peak (see _worker_peak)
                    workers = max(client.run(_worker_peak).values())
        finally:
            if cluster is not None:
                cluster.close()
        extra = {"blocks": len(data.blocks)}
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"setup_s": setup, "epoch_s": result.seconds / max(1, result.steps),
            "peak_mb": usage, "workers_peak_mb": workers if spec["mode"] == "cluster" else None,
            "first_loss": result.losses[0], "last_loss": result.losses[-1],
            "stopped": result.stopped, **extra}


def _worker_peak() -> float:
    """A worker's peak resident memory in MB. Its ``getrusage`` peak would count the process it
    was forked from (Linux keeps ``ru_maxrss`` across ``execve``), so this reads the kernel's
    high-water mark of the worker's own address space (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ---- the table --------------------------------------------------------------------------------

MODES = [("memory", "in memory", {}), ("threads", "chunked, threads", {}),
         ("threads", "chunked Parquet, threads", {"format": "parquet"}),
         ("cluster", "chunked, LocalCluster (2 workers)", {})]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--epochs", type=int, default=3, help="regression epochs (digits: 20)")
    ap.add_argument("--batch", type=int, default=1024, help="minibatch rows (0: none)")
    ap.add_argument("--workdir", help="where the data files are kept (default: a temporary "
                    "folder, removed afterwards)")
    ap.add_argument("--json", help="write every result to this file")
    ap.add_argument("--quick", action="store_true", help="10^4 rows, 1 epoch: a smoke run")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--make-data", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_data:
        made = make_data(Path(args.make_data[0]), [int(r) for r in args.make_data[1].split(",")])
        print(json.dumps({k: str(v) for k, v in made.items()}))
        return 0
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    rows = [10_000] if args.quick else [int(r) for r in args.rows.split(",")]
    epochs = 1 if args.quick else args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        # made in a process of its own: a child's getrusage peak starts from its parent's
        # resident size at the fork, so the parent that starts every configuration stays small
        made = subprocess.run([sys.executable, __file__, "--make-data", str(workdir),
                               ",".join(map(str, rows))], capture_output=True, text=True)
        if made.returncode:
            print(made.stderr, file=sys.stderr)
            return 1
        folders = json.loads(made.stdout.strip().splitlines()[-1])
        plan: list[tuple[str, str, dict[str, Any]]] = []
        for mode, label, more in MODES:
            plan.append(("digits (1,797)", label, {"program": "digits", "mode": mode,
                                                  "epochs": 2 if args.quick else 20,
                                                  "folder": str(folders["digits"]), **more}))
        for n in rows:
            for mode, label, more in MODES:
                plan.append((f"regression ({n:,})", label,
                             {"program": "regression", "mode": mode, "epochs": epochs,
                              "folder": str(folders[f"regression-{n}"]), **more}))
            if args.batch:
                for mode, label in (("memory", "in memory"), ("threads", "chunked, threads")):
                    plan.append((f"regression ({n:,}), Adam, batch {args.batch}", label,
                                 {"program": "regression", "mode": mode, "epochs": epochs,
                                  "batch": args.batch,
                                  "folder": str(folders[f"regression-{n}"])}))
        results = []
        reference: dict[str, float] = {}
        failed = False
        for workload, label, spec in plan:
            out = run_child(spec)
            if "error" not in out:
                ref = reference.setdefault(workload, out["first_loss"])
                if not math.isclose(out["first_loss"], ref, rel_tol=1e-9):
                    out["error"] = f"first loss {out['first_loss']!r}, in memory {ref!r}"
            failed |= "error" in out
            results.append({"workload": workload, "configuration": label, **spec, **out})
            print(_row(results[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['workload']} | {r['configuration']} | FAILED: {r['error']} | | |"
    workers = f", workers {r['workers_peak_mb']:.0f} MB" if r.get("workers_peak_mb") else ""
    return (f"| {r['workload']} | {r['configuration']} | {r['epoch_s'] * 1000:,.1f} ms | "
            f"{r['setup_s']:.2f} s | {r['peak_mb']:.0f} MB{workers} |")


if __name__ == "__main__":
    raise SystemExit(main())
