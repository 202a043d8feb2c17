"""`exprgrad examples DIR`: the example programs, shipped inside the package, copied out.

Contract: the wheel carries ``examples/`` as ``exprgrad/examples`` (a repository checkout reads
its own ``examples/``); :func:`copy_examples` copies every ``.exg`` file and the ``data/`` files
into a folder (created if needed), never replacing a file that is already there, and says what it
did. It copies regular files only.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from ..errors import ExprgradValueError


def examples_root() -> Path:
    packaged = resources.files("exprgrad").joinpath("examples")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "examples"


def copy_examples(folder: str) -> int:
    source = examples_root()
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ExprgradValueError(f"cannot copy into {folder!r}: it is not a folder",
                                 filename=folder)
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()
                   and (p.suffix in (".exg", ".csv") or p.parent.name == "data")
                   and "__pycache__" not in p.parts)
    copied, kept = 0, 0
    for path in files:
        dest = target / path.relative_to(source)
        if dest.exists() or dest.is_symlink():
            kept += 1
            continue
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        except OSError as err:
            raise ExprgradValueError(f"cannot write {str(dest)!r}: {err.strerror or err}",
                                     filename=str(dest)) from None
        copied += 1
    print(f"copied {copied} file(s) into {target}" + (f"; kept {kept} already there" if kept
                                                       else ""))
    return 0
