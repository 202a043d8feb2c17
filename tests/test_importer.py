"""`import model` finds model.exg: sys.path order, packages, the cache, reload, concurrency,
unwritable directories, name clashes, errors and tracebacks — each in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, tmpfs


def _python(code: str, cwd: Path, *extra_path: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(ROOT), *map(str, extra_path)])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=path))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "model.exg").write_text((EXAMPLES / "tour.exg").read_text())
    return tmp_path


def test_import_from_sys_path_and_cache(project: Path) -> None:
    code = """
        import exprgrad
        exprgrad.install()
        import model
        print(model.g_grad(0.5, 2.0)[1][1], exprgrad.ui.importer.stats)
    """
    first = _python(code, project)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split(None, 1) == ["-12.0", "{'compiled': 1, 'cache_hits': 0}\n"]
    cached = project / "__pycache__" / "model.exg.py"
    assert cached.read_text().startswith("# exprgrad-cache-key: ")
    second = _python(code, project)
    assert "{'compiled': 0, 'cache_hits': 1}" in second.stdout  # the second import did not compile
    # a stale entry (the source changed) is recompiled, whatever the modification times say
    stamp = cached.stat().st_mtime
    (project / "model.exg").write_text((EXAMPLES / "tour.exg").read_text() + "\n# edited\n")
    os.utime(project / "model.exg", (stamp - 100, stamp - 100))
    third = _python(code, project)
    assert "{'compiled': 1, 'cache_hits': 0}" in third.stdout


def test_not_installed_by_importing_exprgrad(project: Path) -> None:
    result = _python("import exprgrad\nimport model\n", project)
    assert result.returncode != 0 and "No module named 'model'" in result.stderr
    result = _python("""
        import exprgrad
        exprgrad.install(); exprgrad.install()
        import model
        exprgrad.uninstall()
        import sys
        del sys.modules['model']
        try:
            import model
        except ModuleNotFoundError:
            print('gone')
    """, project)
    assert result.stdout.strip() == "gone", result.stderr


def test_import_from_a_package(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "net.exg").write_text((EXAMPLES / "seed_mlp.exg").read_text())
    result = _python("""
        import exprgrad
        exprgrad.install()
        from pkg import net
        import pkg.net
        print(pkg.net is net, len(net.PARAM_NAMES), net.__name__)
    """, tmp_path)
    assert result.stdout.split() == ["True", "41", "pkg.net"], result.stderr


def test_edit_then_reload(project: Path) -> None:
    result = _python("""
        import importlib, pathlib, exprgrad
        exprgrad.install()
        import model
        before = model.g(0.5, 2.0)
        pathlib.Path('model.exg').write_text('def g(a, b):\\n    return a + b\\n')
        importlib.reload(model)
        print(before < 0, model.g(0.5, 2.0))
    """, project)
    assert result.stdout.split() == ["True", "2.5"], result.stderr


def test_concurrent_imports_from_several_processes(project: Path) -> None:
    code = ("import exprgrad; exprgrad.install(); import model; "
            "assert model.g_grad(0.5, 2.0)[1][1] == -12.0; print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=project, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(ROOT))) for _ in range(8)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok", err
    cache = project / "__pycache__"
    assert [p.name for p in cache.iterdir()] == ["model.exg.py"]  # no temporary files left
    compile((cache / "model.exg.py").read_text(), "model", "exec")


def test_unwritable_directory_still_imports(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    with tmpfs(ro, "1m") as mounted:
        (ro / "model.exg").write_text((EXAMPLES / "tour.exg").read_text())
        if mounted:  # a real read-only file system
            assert subprocess.run(["mount", "-o", "remount,ro", str(ro)]).returncode == 0
        else:  # no mount permission: make the cache directory impossible to create instead
            (ro / "__pycache__").write_text("not a directory")
        result = _python("""
            import exprgrad, inspect
            exprgrad.install()
            import model
            print(model.g_grad(0.5, 2.0)[1][1], exprgrad.ui.importer.stats['compiled'])
            print(inspect.getsource(model.g).splitlines()[0])
        """, ro)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["-12.0 1", "def g(a, b):"]
        assert not (ro / "__pycache__").is_dir()


def test_py_beside_exg_is_an_error(project: Path) -> None:
    (project / "model.py").write_text("X = 1\n")
    result = _python("import exprgrad\nexprgrad.install()\nimport model\n", project)
    assert result.returncode != 0
    assert "ExprgradImportError" in result.stderr and "model.py" in result.stderr


def test_json_exg_does_not_hijack_json(tmp_path: Path) -> None:
    (tmp_path / "json.exg").write_text("def dumps(x):\n    return x\n")
    result = _python("""
        import exprgrad
        exprgrad.install()
        import json
        print(json.dumps({"a": 1}), json.__file__.endswith('__init__.py'))
    """, tmp_path)
    assert result.stdout.split() == ['{"a":', '1}', "True"], result.stderr


def test_syntax_error_message_is_an_import_error_with_a_caret(tmp_path: Path) -> None:
    (tmp_path / "broken.exg").write_text("def f(x):\n    return x +\n")
    result = _python("""
        import exprgrad
        exprgrad.install()
        try:
            import broken
        except ImportError as err:
            print(type(err).__name__)
            print(err)
    """, tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "ExprgradImportError"
    assert lines[1].endswith("broken.exg:2:15: syntax error: unexpected end of line; expected "
                             "'(', '+' or '-', '[', a \"string\", a name, a number")
    assert lines[2] == "        return x +" and lines[3] == "                  ^"


def test_traceback_points_into_generated_code(project: Path) -> None:
    result = _python("""
        import exprgrad, traceback
        exprgrad.install()
        import model
        try:
            model.g("not a number", 1.0)
        except TypeError:
            frame = traceback.extract_tb(__import__('sys').exc_info()[2])[-1]
            print(frame.filename)
            print(frame.line)
            print(frame.name)
    """, project)
    filename, line, name = result.stdout.splitlines()
    assert filename.endswith("__pycache__/model.exg.py")
    assert line == "_t4 = math.tanh(a) - (_t2 * _t2 * _t2)" and name == "g"
    source = Path(filename).read_text().splitlines()
    index = source.index("    _t2 = 0.0 if b <= 0.0 else b")
    assert source[index - 1] == "    # line 9"  # the comment names the .exg line


def test_an_edited_cache_entry_is_recompiled_not_run(tmp_path: Path) -> None:
    """Code appended to the cached module in __pycache__ never runs: the entry fails the
    allowlist, so the import compiles the .exg file again (and rewrites the cache)."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "model.exg").write_text("def g(a, b):\n    return a * b\n", encoding="utf-8")
    first = _python("import exprgrad\nexprgrad.install()\nimport model\n"
                    "print(model.g(2.0, 3.0))\n", project)
    assert first.returncode == 0, first.stderr
    cached = project / "__pycache__" / "model.exg.py"
    marker = tmp_path / "pwned"
    cached.write_text(cached.read_text(encoding="utf-8")
                      + f"\nopen({str(marker)!r}, 'w').write('x')\n", encoding="utf-8")
    second = _python("import exprgrad\nexprgrad.install()\nimport model\n"
                     "print(model.g(2.0, 3.0), exprgrad.ui.importer.stats)\n", project)
    assert second.returncode == 0, second.stderr
    assert not marker.exists()
    assert "'compiled': 1" in second.stdout and second.stdout.startswith("6.0")
    assert "open(" not in cached.read_text(encoding="utf-8")


def test_an_edit_the_allowlist_accepts_is_not_run_either(tmp_path: Path) -> None:
    """x * 2.0 edited to x * 3.0 in the cache is valid generated code; it must still not run."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "model.exg").write_text("def f(x):\n    return x * 2\n", encoding="utf-8")
    script = "import exprgrad\nexprgrad.install()\nimport model\nprint(model.f(3.0))\n"
    assert _python(script, project).stdout.strip() == "6.0"
    cached = project / "__pycache__" / "model.exg.py"
    text = cached.read_text(encoding="utf-8")
    assert "x * 2.0" in text
    cached.write_text(text.replace("x * 2.0", "x * 3.0"), encoding="utf-8")
    assert _python(script, project).stdout.strip() == "6.0"


def test_the_cache_is_only_a_regular_file_exprgrad_wrote(tmp_path: Path) -> None:
    """A FIFO at the cache path does not hang the import, a user's file there is not replaced,
    and a __pycache__ that is a link is not written through: the module imports uncached."""
    script = "import exprgrad\nexprgrad.install()\nimport model\nprint(model.f(3.0))\n"
    for setup in ("fifo", "foreign", "link"):
        project = tmp_path / setup
        project.mkdir()
        (project / "model.exg").write_text("def f(x):\n    return x * 2\n", encoding="utf-8")
        cache = project / "__pycache__"
        if setup == "link":
            (tmp_path / f"victim_{setup}").mkdir()
            cache.symlink_to(tmp_path / f"victim_{setup}")
        else:
            cache.mkdir()
        entry = cache / "model.exg.py"
        if setup == "fifo":
            os.mkfifo(entry)
        elif setup == "foreign":
            entry.write_text("my notes\n")
        result = _python(script, project)
        assert result.returncode == 0 and result.stdout.strip() == "6.0", (setup, result.stderr)
        if setup == "foreign":
            assert entry.read_text() == "my notes\n"
        if setup == "link":
            assert not (tmp_path / f"victim_{setup}" / "model.exg.py").exists()
