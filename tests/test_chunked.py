"""Chunked training through Dask (exprgrad/run/chunked.py): the same numbers as in memory, step
for step, from CSV and Parquet files split unevenly; a dask.distributed LocalCluster gives the
local result; bad input is a located error with exit 2."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from exprgrad.errors import ExprgradValueError
from exprgrad.lower.lowering import program_of
from exprgrad.readers import csv_block
from exprgrad.run.chunked import ChunkedData, fast_csv, open_source, train_chunked
from exprgrad.run.config import TrainConfig, config_from_program
from exprgrad.run.training import train
from exprgrad.ui.cli import main

PROGRAM = """\
net n = MLP(3, [6, 1])

def loss(x[3], y):
    return (n(x) - y) ** 2

train loss(): optimizer=sgd, lr=0.01, steps=4, seed=0
"""

#: seven files of uneven sizes (300 examples), one of a single example, one of none
SIZES = (3, 90, 1, 57, 0, 111, 38)


def _rows(n: int = sum(SIZES), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    return np.column_stack([x, y])


def _line(row: np.ndarray) -> str:
    return ",".join(repr(float(v)) for v in row)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``p.exg``, ``all.csv`` (every example, in memory) and ``part-1.csv`` ... ``part-7.csv``
    (the same examples in order, split unevenly: headers on most, none on one, blank lines,
    CRLF line ends, a file of a header only), and ``pq-*.parquet`` (small row groups)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("chunked")
    (folder / "p.exg").write_text(PROGRAM)
    rows = _rows()
    (folder / "all.csv").write_text("a,b,c,t\n" + "".join(_line(r) + "\n" for r in rows))
    start = 0
    for k, size in enumerate(SIZES, 1):
        part = rows[start:start + size]
        start += size
        lines = [_line(r) for r in part]
        if k == 2:
            lines.insert(10, "")  # a blank line
        head = "" if k == 4 else "a,b,c,t\n"  # part-4 has no header
        end = "\r\n" if k == 6 else "\n"
        (folder / f"part-{k}.csv").write_text(head + "".join(x + end for x in lines),
                                              newline="")
        table = pa.table({name: part[:, j] for j, name in enumerate("abct")})
        pq.write_table(table, folder / f"pq-{k}.parquet", row_group_size=25)
    return folder


def _program(folder: Path):  # type: ignore[no-untyped-def]
    return program_of(str(folder / "p.exg"))


def _config(folder: Path, **settings: object) -> TrainConfig:
    return replace(config_from_program(_program(folder)), **settings)  # type: ignore[arg-type]


def _in_memory(folder: Path, config: TrainConfig):  # type: ignore[no-untyped-def]
    return train(_program(folder), config=replace(config, backend="numpy"),
                 csv_path=str(folder / "all.csv"))


def _chunked(folder: Path, pattern: str, config: TrainConfig, client: object = None,
             **kw: object):  # type: ignore[no-untyped-def]
    program = _program(folder)
    fn = program.functions[config.loss]
    blocksize = kw.pop("blocksize", 32 << 20)
    source = open_source(str(folder / pattern), fn, kw.pop("cols", None), blocksize)
    chunks = ChunkedData(source, fn, client, config.dtype)
    return train_chunked(program, chunks, config=config, **kw), chunks  # type: ignore[arg-type]


def _close(a: list[float], b: list[float], tol: float = 1e-12) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("optimizer,reduce", [("sgd", "sum"), ("momentum", "mean"),
                                              ("adam", "mean")])
def test_full_batch_over_seven_uneven_files_equals_in_memory_step_for_step(
        data: Path, optimizer: str, reduce: str) -> None:
    config = _config(data, optimizer=optimizer, reduce=reduce, steps=6,
                     lr=0.01 if optimizer != "adam" else 0.05)
    memory = _in_memory(data, config)
    chunked, chunks = _chunked(data, "part-*.csv", config)
    assert chunks.n == 300 and len(chunks.source.files) == 7 and chunks.lengths == [
        s for s in SIZES if s]
    assert memory.stopped is None and chunked.stopped is None
    assert len(chunked.losses) == 6
    assert _close(memory.losses, chunked.losses), (memory.losses, chunked.losses)
    assert _close(memory.params, chunked.params)
    # the loss went down: the equality is of training that does something
    assert chunked.losses[-1] < chunked.losses[0]


def test_small_blocks_cut_files_at_line_ends_and_change_nothing(data: Path) -> None:
    config = _config(data, optimizer="adam", lr=0.05, steps=3)
    whole, _ = _chunked(data, "part-*.csv", config)
    small, chunks = _chunked(data, "part-*.csv", config, blocksize=700)  # a few lines each
    assert len(chunks.blocks) > 30 and chunks.n == 300
    assert _close(whole.losses, small.losses) and _close(whole.params, small.params)


@pytest.mark.parametrize("optimizer,reduce,batch", [("sgd", "sum", 16), ("adam", "mean", 32),
                                                    ("momentum", "mean", 299)])
def test_minibatches_are_the_in_memory_ones_in_the_same_order(
        data: Path, optimizer: str, reduce: str, batch: int) -> None:
    config = _config(data, optimizer=optimizer, reduce=reduce, batch_size=batch, steps=3,
                     seed=7)
    memory = _in_memory(data, config)
    # a window of two batches: an epoch gathers its examples in several Dask computations
    chunked, _ = _chunked(data, "part-*.csv", config, window=2 * batch)
    assert memory.losses == chunked.losses  # the same examples, the same order: bit for bit
    assert memory.params == chunked.params
    # another seed shuffles otherwise: the test would see a wrong order
    other, _ = _chunked(data, "part-*.csv", replace(config, seed=8), window=2 * batch)
    assert other.losses[1:] != chunked.losses[1:]


def test_parquet_files_equal_in_memory(data: Path) -> None:
    config = _config(data, optimizer="adam", lr=0.05, steps=4, reduce="mean")
    memory = _in_memory(data, config)
    chunked, chunks = _chunked(data, "pq-*.parquet", config)
    assert chunks.source.kind == "parquet" and len(chunks.blocks) == 1 + 4 + 1 + 3 + 5 + 2
    assert _close(memory.losses, chunked.losses) and _close(memory.params, chunked.params)
    batches = replace(config, batch_size=20)
    memory = _in_memory(data, batches)
    chunked, _ = _chunked(data, "pq-*.parquet", batches, window=50)
    assert memory.losses == chunked.losses and memory.params == chunked.params


def test_cols_pick_columns_by_name_and_index_in_both_modes(data: Path) -> None:
    config = _config(data, steps=2)
    program = _program(data)
    fn = program.functions["loss"]
    by_name = open_source(str(data / "part-*.csv"), fn, "c,a,b,t")
    assert by_name.columns == [2, 0, 1, 3] and by_name.names == ["a", "b", "c", "t"]
    assert open_source(str(data / "pq-*.parquet"), fn, "2,0:2,3").columns == [2, 0, 1, 3]
    chunked, _ = _chunked(data, "part-*.csv", config, cols="c,a,b,t")
    plain, _ = _chunked(data, "part-*.csv", config)
    assert not _close(chunked.losses, plain.losses)  # the columns did move
    for args in (["--data", str(data / "all.csv"), "--cols", "2,0,1,t", "--backend", "numpy"],
                 ["--data", str(data / "part-*.csv"), "--cols", "c,a,b,3"]):
        out = data / f"cols-{len(args)}.json"
        assert main(["train", str(data / "p.exg"), "--steps", "2", "--quiet", "--save",
                     str(out), "--force", *args]) == 0
    saved = [json.loads((data / f"cols-{k}.json").read_text()) for k in (6, 4)]
    assert saved[0]["final_loss"] == pytest.approx(saved[1]["final_loss"], rel=1e-12)
    for record in saved:
        assert _close(list(record["params"].values()), chunked.params)


def test_cli_chunked_run_reports_and_saves(data: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    out = data / "trained.json"
    code = main(["train", str(data / "p.exg"), "--data", str(data / "part-*.csv"),
                 "--epochs", "3", "--optimizer", "adam", "--lr", "0.05", "--batch-size", "32",
                 "--json", "--save", str(out), "--force"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["examples"] == 300 and summary["steps"] == 3
    assert summary["chunked"] == {"pattern": str(data / "part-*.csv"), "format": "csv",
                                  "files": 7, "blocks": 6, "examples": 300,
                                  "scheduler": "threads"}
    memory = _in_memory(data, _config(data, optimizer="adam", lr=0.05, batch_size=32,
                                      steps=3))
    saved = json.loads(out.read_text())
    assert list(saved["params"].values()) == memory.params
    assert summary["first_loss"] == memory.losses[0]


def test_a_local_cluster_gives_the_local_result(data: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import dask
    from distributed import LocalCluster

    results = {}
    with dask.config.set({"distributed.comm.timeouts.connect": "10s"}), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
            host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        for where in ("threads", address):
            for batch in ("0", "40"):
                args = ["train", str(data / "p.exg"), "--data", str(data / "part-*.csv"),
                        "--steps", "3", "--optimizer", "adam", "--lr", "0.05",
                        "--batch-size", batch, "--json", "--blocksize", "2000"]
                assert main(args + (["--scheduler", where] if where != "threads" else [])) == 0
                results[where, batch] = json.loads(capsys.readouterr().out)
        # a mistake found on a worker comes back located (the error pickles whole)
        bad = data / "bad-cluster"
        bad.mkdir(exist_ok=True)
        (bad / "a.csv").write_text("1,2,3,4\n1,2,x,4\n")
        assert main(["train", str(data / "p.exg"), "--data", str(bad / "*.csv"),
                     "--scheduler", address, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "a.csv:2:5: error: line 2, field 3: 'x' is not a number" in err, err
    for batch in ("0", "40"):
        local, remote = results["threads", batch], results[address, batch]
        assert remote["chunked"]["scheduler"] == address and remote["chunked"]["blocks"] > 7
        # the same graph, the same sums: equal in every run so far; the tolerance only allows
        # for a BLAS that splits a product's sum by its threads
        assert math.isclose(remote["first_loss"], local["first_loss"], rel_tol=1e-14)
        assert math.isclose(remote["final_loss"], local["final_loss"], rel_tol=1e-14)
        assert remote["final_loss"] != results["threads", "0" if batch == "40" else "40"][
            "final_loss"]  # (full batch and minibatches did train differently)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["train", *args, "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_bad_input_is_a_located_error(data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    exg = str(data / "p.exg")
    ok = "1,2,3,4\n" * 5

    def files(**texts: str) -> str:
        folder = tmp_path / f"set{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, text in texts.items():
            (folder / f"{name}.csv").write_text(text)
        return str(folder / "*.csv")

    cases = [
        (["--data", str(tmp_path / "none-*.csv")], "no file matches"),
        (["--data", str(tmp_path / "missing.csv"), "--chunked"],
         "cannot read"),
        (["--data", files(a=ok, b=ok + "1,2,3,4,5\n")],
         "b.csv:6:9: error: line 6 has 5 fields; the file's rows have 4"),
        (["--data", files(a=ok, b="a,b,c,d\n" + ok + "1,2\n")],
         "b.csv:7:5: error: line 7 has 2 fields; the file's rows have 4"),
        (["--data", files(a=ok, b=ok + "1,2,abc,4\n")],
         "b.csv:6:5: error: line 6, field 3: 'abc' is not a number"),
        (["--data", files(a=ok, b=ok + "1,2,,4\n")], "line 6, field 3: '' is not a number"),
        (["--data", files(a=ok, b=ok + "1,2,1e999,4\n")], "'1e999' does not fit a float"),
        (["--data", files(a=ok, b="1,2,3\n")], "b.csv' has 3 columns; '"),
        (["--data", files(a="x,y,z,w\n" + ok, b="p,q,r,s\n" + ok)], "differ from those of"),
        (["--data", files(a="1;2;3;4\n")], "fields separated by ';' or tabs"),
        (["--data", files(a="a,b,c\n1,2,3\n")], "has 3 columns; 'loss' needs 4"),
        (["--data", files(a="a,b\n")], "has 2 columns; 'loss' needs 4"),
        (["--data", files(a="a,b,c,d\n")], "there are no training examples"),
        (["--data", files(a=ok), "--cols", "0:2"], "--cols picks 2 columns; 'loss' needs 4"),
        (["--data", files(a=ok), "--cols", "0,1,2,9"], "column 9 is beyond the 4 columns"),
        (["--data", files(a=ok), "--cols", "a,b,c,d"], "it has no header row"),
        (["--data", str(data / "p.exg"), "--chunked"], "neither a .csv nor a .parquet file"),
        (["--data", files(a=ok), "--backend", "python"], "runs the numpy backend"),
        (["--data", files(a=ok), "--blocksize", "lots"], "--blocksize 'lots' is not a size"),
        (["--data", files(a=ok), "--scheduler", "nonsense"], "is not the address of a Dask"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler trains on --data in chunks"),
        (["--chunked"], "--chunked trains on --data in chunks"),
        (["--data", str(data / "all.csv"), "--blocksize", "1MiB"],
         "--blocksize is for chunked training"),
        (["--data", files(a=ok + "1,2,3,1e300\n"), "--dtype", "float32"],
         "does not fit float32"),
    ]
    for args, expected in cases:
        code, err = _cli([exg, *args], capsys)
        assert code == 2 and expected in err, (args, err)


def test_a_bad_row_in_a_later_block_has_its_line_in_the_file(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    (tmp_path / "p.exg").write_text(PROGRAM)
    lines = ["a,b,c,t"] + [_line(r) for r in _rows(400)]
    lines[321] = lines[321].replace(",", ",oops", 1)
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
    code, err = _cli([str(tmp_path / "p.exg"), "--data", str(tmp_path / "big.csv"),
                      "--chunked", "--blocksize", "3000"], capsys)
    assert code == 2
    assert err.startswith(f"{tmp_path / 'big.csv'}:322:") and "line 322, field 2: 'oops" in err


def test_nan_in_the_data_stops_training_as_in_memory(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    (tmp_path / "p.exg").write_text(PROGRAM)
    (tmp_path / "a.csv").write_text("1,2,3,4\n" * 40)
    (tmp_path / "b.csv").write_text("1,2,nan,4\n" + "1,2,3,4\n" * 3)  # the strict reader's
    code, err = _cli([str(tmp_path / "p.exg"), "--data", str(tmp_path / "*.csv")], capsys)
    assert code == 1 and "step 1: the loss or its gradient is not finite" in err


def test_unreachable_scheduler_and_unquoted_glob_in_a_real_process(data: Path) -> None:
    result = run_cli("train", str(data / "p.exg"), "--data", str(data / "part-*.csv"),
                     "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "1",
                     timeout=60)
    assert result.returncode == 2, result.stderr
    assert "cannot reach a Dask scheduler at 'tcp://127.0.0.1:9'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    parts = sorted(str(p) for p in data.glob("part-*.csv"))
    result = run_cli("train", str(data / "p.exg"), "--data", *parts, timeout=60)
    assert result.returncode == 2 and "hint: quote a --data pattern" in result.stderr


def test_without_dask_chunked_mode_says_what_to_install(
        data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setitem(__import__("sys").modules, "dask", None)
    code, err = _cli([str(data / "p.exg"), "--data", str(data / "part-*.csv")], capsys)
    assert code == 2 and "needs dask, which is not installed" in err
    assert "pip install 'exprgrad[dask]'" in err


_FIELD = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(alphabet="0123456789eE+-. ", max_size=8),
    st.integers(-10**30, 10**30).map(str),
    st.builds("{}e{}".format, st.integers(-99, 99), st.integers(-400, 400)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_FIELD, min_size=2, max_size=2), min_size=1, max_size=6))
def test_thefast_csv_path_reads_what_the_strict_reader_reads(rows: list[list[str]]) -> None:
    data = "".join(",".join(r) + "\n" for r in rows).encode()
    fast = fast_csv(data, 2)
    try:
        strict = csv_block(data, "f.csv", 1, 2)
    except ExprgradValueError:
        assert fast is None, (data, fast)
        return
    if fast is not None:
        assert fast.shape == (len(strict), 2)
        assert fast.tolist() == strict, (data, fast, strict)


def test_in_memory_shuffle_is_what_chunked_training_replays() -> None:
    # chunked training shuffles an array('q') with the rng in-memory training shuffles a
    # list with: the same permutation
    import array

    a, b = random.Random(3), random.Random(3)
    items = list(range(1000))
    packed = array.array("q", range(1000))
    a.shuffle(items)
    b.shuffle(packed)
    assert items == list(packed) and items != sorted(items)


def test_the_benchmark_runs_a_configuration_and_checks_it(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import chunked as bench  # benchmarks/chunked.py

    folder = bench.make_data(tmp_path, [3000])["regression-3000"]
    assert len(list(folder.glob("part-*.csv"))) == 1 == len(list(folder.glob("*.parquet")))
    spec = {"program": "regression", "epochs": 2, "folder": str(folder)}
    memory = bench.run_child({**spec, "mode": "memory"})
    chunked = bench.run_child({**spec, "mode": "threads", "format": "parquet"})
    assert "error" not in memory and "error" not in chunked, (memory, chunked)
    assert math.isclose(memory["first_loss"], chunked["first_loss"], rel_tol=1e-12)
    assert math.isclose(memory["last_loss"], chunked["last_loss"], rel_tol=1e-12)
    assert chunked["peak_mb"] > 0 and chunked["blocks"] == 1


def test_ctrl_c_keeps_the_whole_steps_and_writes_them_at_once(
        data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    two, _ = _chunked(data, "part-*.csv", _config(data, steps=2))
    real = ChunkedData.totals
    calls = []

    def interrupted_third(self: ChunkedData, *args: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ChunkedData, "totals", interrupted_third)
    out = data / "interrupted.json"
    code = main(["train", str(data / "p.exg"), "--data", str(data / "part-*.csv"), "--steps",
                 "5", "--quiet", "--save", str(out), "--force"])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted during step 3" in err and "--save" in err
    assert list(json.loads(out.read_text())["params"].values()) == two.params


def test_matrix_and_vector_arguments_take_their_columns_row_major(tmp_path: Path) -> None:
    # loss(m[2, 2], y[2]): columns 0-3 are m row by row, 4-5 are y (softmax cross-entropy)
    (tmp_path / "p.exg").write_text(
        "net n = MLP(4, [5, 2], out=linear)\n\n"
        "def loss(m[2, 2], y[2]):\n    z = n(flatten(m))\n    return logsumexp(z) - dot(y, z)\n\n"
        "train loss(): optimizer=adam, lr=0.05, steps=3, seed=1\n")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(90, 4))
    labels = (x[:, 0] * x[:, 3] > 0).astype(int)
    rows = np.column_stack([x, np.eye(2)[labels]])
    (tmp_path / "all.csv").write_text("".join(_line(r) + "\n" for r in rows))
    for k, (lo, hi) in enumerate([(0, 13), (13, 14), (14, 60), (60, 90)]):
        (tmp_path / f"part-{k}.csv").write_text("".join(_line(r) + "\n" for r in rows[lo:hi]))
    for batch in (0, 8):
        config = _config(tmp_path, batch_size=batch)
        memory = _in_memory(tmp_path, config)
        chunked, chunks = _chunked(tmp_path, "part-*.csv", config, window=16)
        assert chunks.layout == ((0, (2, 2)), (4, (2,)))
        assert _close(memory.losses, chunked.losses) and _close(memory.params, chunked.params)


@pytest.mark.parametrize("banner", [b"", b"SSH-2.0-OpenSSH_9.2\r\n"])
def test_a_server_that_is_not_a_scheduler_is_a_clear_error(data: Path, banner: bytes) -> None:
    """A port that accepts and says nothing (an HTTP server waits for a request) hung for ever;
    one that sends a banner crashed the handshake (a 2.8 EiB allocation): both are exit 2 within
    the timeout's bound."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if banner:
                conn.sendall(banner)

    threading.Thread(target=serve, daemon=True).start()
    try:
        result = run_cli("train", str(data / "p.exg"), "--data", str(data / "part-*.csv"),
                         "--scheduler", f"tcp://127.0.0.1:{port}", "--scheduler-timeout", "2",
                         timeout=120)
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert result.returncode == 2, result.stderr
    # (distributed's half-built Client may print "Exception ignored in: Client.__del__" as the
    # process exits, after exprgrad's own message)
    first = result.stderr.split("Exception ignored")[0]
    assert "cannot reach a Dask scheduler" in first and "Traceback" not in first
