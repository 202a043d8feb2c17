"""Whole-file fuzzing: the examples mutated at the byte and token level (cut, inserted language
words, numbers, indentation, brackets, stray bytes). Every outcome must be a compiled module
(both backends, loaded) or an exprgrad error that is the user's (exit 2 material): never another
exception, never an internal error, never a hang. A bounded run here;
``python scripts/fuzz_files.py --cases N`` runs many more."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from exprgrad.emit.arrays import generate_numpy
from exprgrad.emit.load import module_from_code
from exprgrad.emit.scalar import generate
from exprgrad.errors import ExprgradError, is_bug
from exprgrad.lower.lowering import compile_program

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCES = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.exg"))]
TOKENS = [b"def ", b"param ", b"net ", b"data ", b"train ", b"grad ", b"return ", b"(", b")",
          b"[", b"]", b",", b":", b"=", b"+", b"-", b"*", b"**", b"/", b"@", b"\n", b"    ",
          b"\t", b"x", b"y", b"1", b"1e308", b"0", b"-0.0", b"MLP(2, [3, 1])", b'csv("x.csv")',
          b"uniform(-1, 1)", b"#", b'"', b"\xff", b"\x00", b"dout", b"relu", b"max", b"sum",
          b"logsumexp", b"atan2", b"[[1, 2], [3, 4]]", b"\r\n", b"lr=", b"steps=1e300"]
#: seconds one case may take before it counts as a hang
HANG_SECONDS = 20


class Hang(Exception):
    pass


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        pos = rng.randint(0, len(out))
        if kind < 0.3 and out:
            del out[pos:pos + rng.randint(1, 8)]
        elif kind < 0.7:
            out[pos:pos] = rng.choice(TOKENS)
        elif out:
            out[rng.randint(0, len(out) - 1)] = rng.choice(b"()[],:=+-*/ 0123456789xyzw\n.\xff")
    return bytes(out)


def outcome(source: bytes) -> str:
    """'ok', 'not utf-8' or the user error's class name; raises for anything else."""
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8"
    try:
        with _deadline(HANG_SECONDS):
            program = compile_program(text, str(EXAMPLES / "fuzzed.exg"))
            module_from_code(generate(program), "fuzzed", "<fuzzed>")
            module_from_code(generate_numpy(program), "fuzzed_np", "<fuzzed>")
    except ExprgradError as err:
        if is_bug(err):
            raise
        return type(err).__name__
    return "ok"


def run(cases: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    for _ in range(cases):
        source = mutate(rng, rng.choice(SOURCES))
        try:
            result = outcome(source)
        except BaseException as err:
            raise AssertionError(f"{type(err).__name__}: {err} for {source[:400]!r}") from err
        counts[result] = counts.get(result, 0) + 1
    return counts


def test_mutated_files_compile_or_fail_cleanly() -> None:
    counts = run(1000, seed=20261128)
    assert counts.get("ok", 0) > 50 and sum(counts.values()) == 1000, counts
