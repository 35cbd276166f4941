"""Every output is written atomically: birdclef.atomic's behaviour, and a scan that no module writes any other way.

The scan reads every ``.py`` under ``workflow_scripts/`` and fails on a call that writes a
file (``to_csv``, ``to_parquet``, ``write_text``, ``savefig``, ``torch.save``, ``open(..., "w")``
and the like, see ``WRITERS``) unless the path it writes is a temporary of
``with atomic_path(...) as tmp`` / ``with atomic_dir(...) as tmp``: ``tmp`` itself, an expression
built from it (``tmp / "x.ogg"``, ``str(tmp)``), a name assigned from one, or a file handle
opened on one. The helpers (``birdclef.tables.write_csv`` and co., ``birdclef.audio.write_ogg``,
``birdclef.models.save_model``) write that way themselves, so calling them is fine.
"""

from __future__ import annotations

import ast
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from birdclef.atomic import atomic_dir, atomic_path

from conftest import REPO

SCRIPTS = REPO / "workflow_scripts"
# The helper itself renames and removes temporaries; so does the bundle's predict.py, which has its own
# (it imports nothing of the workflow) and writes only through it.
EXEMPT = {"birdclef/atomic.py", "birdclef/bundle_predict.py"}
HELPER_CONTEXTS = {"atomic_path", "atomic_dir"}

# --- the helpers -------------------------------------------------------------


def test_a_file_appears_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "x.csv"
    with atomic_path(target) as tmp:
        assert tmp.name == "x.csv" and tmp.parent.parent == target.parent  # same folder: a rename, not a copy
        assert tmp.parent.name.startswith(".x.csv.") and tmp.parent.name.endswith(".tmp")
        tmp.write_text("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    assert os.listdir(target.parent) == ["x.csv"]


def test_an_exception_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError, match="killed"), atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []


def test_an_exception_keeps_the_old_file(tmp_path):
    (tmp_path / "x.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("new, half")
        raise RuntimeError
    assert (tmp_path / "x.json").read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


def test_an_existing_file_is_replaced(tmp_path):
    (tmp_path / "x.txt").write_text("old")
    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("new")
    assert (tmp_path / "x.txt").read_text() == "new" and os.listdir(tmp_path) == ["x.txt"]


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="left nothing"), atomic_path(tmp_path / "x.txt"):
        pass
    assert os.listdir(tmp_path) == []


def test_an_ir_pair_appears_together_xml_last(tmp_path, monkeypatch):
    """``ov.save_model(model, tmp)`` writes ``tmp`` (.xml) and the .bin beside it: both move, the .xml last."""
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(Path(b).name), real_replace(a, b)))
    with atomic_path(tmp_path / "fp32.xml") as tmp:
        tmp.write_text("<net/>")
        tmp.with_suffix(".bin").write_bytes(b"\0" * 8)
        assert sorted(os.listdir(tmp_path)) == [tmp.parent.name]  # nothing under a final name yet
    assert moved == ["fp32.bin", "fp32.xml"]
    assert sorted(os.listdir(tmp_path)) == ["fp32.bin", "fp32.xml"]
    with pytest.raises(ValueError), atomic_path(tmp_path / "int8.xml") as tmp:
        tmp.with_suffix(".bin").write_bytes(b"\0")
        raise ValueError("quantisation failed")
    assert sorted(os.listdir(tmp_path)) == ["fp32.bin", "fp32.xml"]


def test_a_folder_appears_whole_and_replaces_an_older_one(tmp_path):
    target = tmp_path / "audio"
    (target / "stale").mkdir(parents=True)
    (target / "stale" / "old.ogg").write_bytes(b"old")
    with atomic_dir(target) as tmp:
        assert tmp.is_dir() and not list(tmp.iterdir()) and tmp.parent == tmp_path
        (tmp / "a").mkdir()
        (tmp / "a" / "x.ogg").write_bytes(b"new")
        assert (target / "stale" / "old.ogg").exists()  # the old folder stays until the new one is whole
    assert [p.relative_to(target).as_posix() for p in sorted(target.rglob("*"))] == ["a", "a/x.ogg"]
    assert os.listdir(tmp_path) == ["audio"]


def test_a_failed_folder_leaves_the_old_one_and_no_temporary(tmp_path):
    with pytest.raises(OSError), atomic_dir(tmp_path / "new") as tmp:
        (tmp / "x").write_text("half")
        raise OSError("disk full")
    assert os.listdir(tmp_path) == []
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep").write_text("k")
    with pytest.raises(OSError), atomic_dir(tmp_path / "old") as tmp:
        raise OSError("disk full")
    assert os.listdir(tmp_path) == ["old"] and (tmp_path / "old" / "keep").read_text() == "k"


def test_the_helper_is_stdlib_only():
    """Every rule's environment, and the Snakefile, can import it without numpy, pandas or torch."""
    tree = ast.parse((SCRIPTS / "birdclef" / "atomic.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


# --- the scan ----------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """Where a writing call names its destination: the receiver, or a positional index and keyword names."""

    position: int | None = 0
    keywords: tuple[str, ...] = ()
    receiver: bool = False
    mode_position: int | None = None  # calls that write only in some modes (open, SoundFile); default: read


PANDAS = Writer(0, ("path_or_buf", "path", "excel_writer"))
# By method name, whatever the object: data frames, paths, figures, OpenVINO, pyarrow.
METHODS = {
    "to_csv": PANDAS,
    "to_parquet": PANDAS,
    "to_json": PANDAS,
    "to_feather": PANDAS,
    "to_pickle": PANDAS,
    "to_excel": PANDAS,
    "write_text": Writer(None, receiver=True),
    "write_bytes": Writer(None, receiver=True),
    "savefig": Writer(0, ("fname",)),
    "save_model": Writer(1, ("output_model",)),  # ov.save_model(model, output_model)
    "write_table": Writer(1, ("where",)),  # pq.write_table(table, where)
}
# By module-qualified name (import aliases resolved).
FUNCTIONS = {
    "json.dump": Writer(1, ("fp",)),
    "pickle.dump": Writer(1, ("file",)),
    "torch.save": Writer(1, ("f",)),
    "soundfile.write": Writer(0, ("file",)),
    "soundfile.SoundFile": Writer(0, ("file",), mode_position=1),
    "pyarrow.parquet.ParquetWriter": Writer(0, ("where",)),
    "numpy.save": Writer(0, ("file",)),
    "numpy.savez": Writer(0, ("file",)),
    "numpy.savez_compressed": Writer(0, ("file",)),
    "numpy.savetxt": Writer(0, ("fname",)),
    "shutil.copyfile": Writer(1, ("dst",)),
    "shutil.copy": Writer(1, ("dst",)),
    "shutil.copy2": Writer(1, ("dst",)),
    "shutil.copytree": Writer(1, ("dst",)),
    "shutil.move": Writer(1, ("dst",)),
    "os.replace": Writer(1, ("dst",)),
    "os.rename": Writer(1, ("dst",)),
    "open": Writer(0, ("file",), mode_position=1),
    "io.open": Writer(0, ("file",), mode_position=1),
    "gzip.open": Writer(0, ("filename",), mode_position=1),
    "bz2.open": Writer(0, ("filename",), mode_position=1),
    "lzma.open": Writer(0, ("filename",), mode_position=1),
}
# The helpers that write atomically themselves: calling them is how most outputs are written.
HELPERS = {
    "birdclef.tables.write_csv",
    "birdclef.tables.write_parquet",
    "birdclef.tables.write_json",
    "birdclef.audio.write_ogg",
    "birdclef.models.save_model",
    "birdclef.mel_shards.write_shard",
    "birdclef.manifest.write_manifest",
}
PATH_OPEN = Writer(None, receiver=True, mode_position=0)  # some_path.open("w")
PATH_METHODS = {"joinpath", "with_suffix", "with_name", "with_stem", "absolute", "resolve"}
PATH_FUNCTIONS = {"str", "Path", "pathlib.Path", "os.fspath"}


@dataclass(frozen=True)
class Call:
    file: str
    line: int
    text: str
    routed: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> qualified name, from the module's imports (``sf`` -> ``soundfile``)."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _qualified(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _qualified(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_temporary(node: ast.expr | None, safe: set[str], aliases: dict[str, str]) -> bool:
    """Whether ``node`` is a with-atomic temporary or built from one."""
    if isinstance(node, ast.Name):
        return node.id in safe
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _is_temporary(node.left, safe, aliases)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in PATH_METHODS:
            return _is_temporary(func.value, safe, aliases)
        if _qualified(func, aliases) in PATH_FUNCTIONS and node.args:
            return _is_temporary(node.args[0], safe, aliases)
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.FormattedValue):
        return _is_temporary(node.values[0].value, safe, aliases)
    return False


def _argument(call: ast.Call, position: int | None, keywords: tuple[str, ...]) -> ast.expr | None:
    if position is not None and len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg in keywords), None)


def _writes(call: ast.Call, writer: Writer) -> bool:
    """Whether the call writes at all: it names a destination, in a writing mode."""
    if writer.mode_position is not None:
        mode = _argument(call, writer.mode_position, ("mode",))
        if mode is None:
            return False
        if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
            return any(c in mode.value for c in "wax+")
        return True  # a mode only known at run time: assume the worst
    if writer.receiver:
        return True
    return _argument(call, writer.position, writer.keywords) is not None


def _writer_of(call: ast.Call, aliases: dict[str, str]) -> Writer | None:
    func = call.func
    name = _qualified(func, aliases)
    if name in FUNCTIONS:
        return FUNCTIONS[name]
    if isinstance(func, ast.Attribute):
        if func.attr in METHODS:
            return METHODS[func.attr]
        if func.attr == "open" and not (isinstance(func.value, ast.Name) and func.value.id in aliases):
            return PATH_OPEN  # a path's .open(mode), not a module's open(file, mode)
    return None


def _is_atomic_context(node: ast.expr, aliases: dict[str, str]) -> bool:
    if not isinstance(node, ast.Call):
        return False
    name = _qualified(node.func, aliases) or ""
    return name.rsplit(".", 1)[-1] in HELPER_CONTEXTS


class Scan(ast.NodeVisitor):
    """Every writing call of one module, each with whether it writes a with-atomic temporary."""

    def __init__(self, source: str, file: str) -> None:
        self.source, self.file = source, file
        self.tree = ast.parse(source, filename=file)
        self.aliases = _aliases(self.tree)
        self.safe: set[str] = set()
        self.calls: list[Call] = []
        self.helper_calls: list[Call] = []
        self.visit(self.tree)

    def _scoped(self, node: ast.AST, safe: set[str]) -> None:
        outer, self.safe = self.safe, safe
        self.generic_visit(node)
        self.safe = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._scoped(node, set())  # a function runs later: an enclosing block's temporary is gone by then

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_With(self, node: ast.With) -> None:
        outer = self.safe
        self.safe = set(outer)
        for item in node.items:
            self.visit(item.context_expr)
            target = item.optional_vars
            if isinstance(target, ast.Name) and (
                _is_atomic_context(item.context_expr, self.aliases)
                or (  # a file opened on a temporary is one too: json.dump(x, f)
                    isinstance(item.context_expr, ast.Call)
                    and _is_temporary(self._destination(item.context_expr), self.safe, self.aliases)
                )
            ):
                self.safe.add(target.id)
        for stmt in node.body:
            self.visit(stmt)
        self.safe = outer

    visit_AsyncWith = visit_With

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        if _is_temporary(node.value, self.safe, self.aliases):
            self.safe |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    def _destination(self, call: ast.Call) -> ast.expr | None:
        writer = _writer_of(call, self.aliases)
        if writer is None:
            return None
        if writer.receiver:
            return call.func.value if isinstance(call.func, ast.Attribute) else None
        return _argument(call, writer.position, writer.keywords)

    def visit_Call(self, node: ast.Call) -> None:
        text = " ".join((ast.get_source_segment(self.source, node) or "?").split())
        text = text if len(text) <= 110 else text[:107] + "..."
        writer = _writer_of(node, self.aliases)
        if writer is not None and _writes(node, writer):
            routed = _is_temporary(self._destination(node), self.safe, self.aliases)
            self.calls.append(Call(self.file, node.lineno, text, routed))
        elif _qualified(node.func, self.aliases) in HELPERS:
            self.helper_calls.append(Call(self.file, node.lineno, text, True))
        self.generic_visit(node)


def scan(source: str, file: str = "<snippet>") -> list[Call]:
    return Scan(textwrap.dedent(source), file).calls


def scan_tree() -> tuple[list[Call], list[Call]]:
    """Every writing call under workflow_scripts/, and every call of a writing helper."""
    calls, helpers = [], []
    for path in sorted(SCRIPTS.rglob("*.py")):
        rel = path.relative_to(SCRIPTS).as_posix()
        if rel not in EXEMPT:
            module = Scan(path.read_text(), f"workflow_scripts/{rel}")
            calls += module.calls
            helpers += module.helper_calls
    return calls, helpers


def offenders(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.routed]


def test_every_output_is_written_through_the_atomic_helpers():
    bad = offenders(scan_tree()[0])
    if bad:
        pytest.fail(
            f"{len(bad)} call(s) write a file in place, not through birdclef.atomic "
            "(use birdclef.tables.write_csv / write_parquet / write_json, or write inside "
            "`with atomic_path(path) as tmp:` / `with atomic_dir(path) as tmp:` to tmp or a path built from it):\n"
            + "\n".join(f"  {c}" for c in bad),
            pytrace=False,
        )


def test_the_scan_is_not_vacuous():
    calls, helpers = scan_tree()
    routed = [c for c in calls if c.routed]
    assert len(routed) >= 14, "\n".join(map(str, calls))  # the writes inside the helpers and a few more
    assert len(helpers) >= 35, "\n".join(map(str, helpers))  # and the outputs written through them
    scripts = {c.file for c in routed + helpers if c.file.count("/") == 1}
    assert len(scripts) >= 15, sorted(scripts)  # most rule scripts write their outputs through a helper
    files = {c.file.removeprefix("workflow_scripts/") for c in routed}
    # The places that actually write bytes: the table helpers, figures, checkpoints, IRs, audio, the demo set.
    expected = {
        "birdclef/tables.py",
        "birdclef/plots.py",
        "birdclef/models.py",
        "birdclef/train.py",
        "birdclef/export.py",
        "birdclef/audio.py",
        "birdclef/demo_data.py",
    }
    assert expected <= files, expected - files
    kinds = {c.text.split("(")[0].rsplit(".", 1)[-1] for c in routed}
    assert {"write_table", "to_csv", "write_text", "savefig", "save_model", "save", "SoundFile"} <= kinds, kinds


OFFENDING = {
    "to_csv": "def f(df, path):\n    df.to_csv(path, index=False)",
    "to_parquet keyword": "def f(df, p):\n    df.to_parquet(path=p)",
    "write_text": "from pathlib import Path\nPath('x.json').write_text('{}')",
    "write_bytes on a built path": "def f(out):\n    (out / 'a.ogg').write_bytes(b'')",
    "savefig": "import matplotlib.pyplot as plt\nplt.savefig('fig.png')",
    "save_model": "import openvino as ov\nov.save_model(m, 'fp32.xml', compress_to_fp16=False)",
    "write_table": "import pyarrow.parquet as pq\npq.write_table(t, 'x.parquet')",
    "json.dump": "import json\nwith open('x.json', 'w') as f:\n    json.dump({}, f)",
    "json.dump aliased": "from json import dump\ndef g(x, f):\n    dump(x, f)",
    "torch.save": "import torch\ntorch.save({}, 'model.pt')",
    "sf.write": "import soundfile as sf\nsf.write('a.ogg', x, 32000)",
    "SoundFile w": "import soundfile as sf\nwith sf.SoundFile('a.ogg', 'w', samplerate=1, channels=1) as f:\n    pass",
    "open append": "open('log.txt', 'a').write('x')",
    "Path.open w": "def f(p):\n    with p.open('wb') as fh:\n        fh.write(b'')",
    "private rename twin": "import os, torch\ntmp = 'x.tmp'\ntorch.save({}, tmp)\nos.replace(tmp, 'x.pt')",
    "after the block": (
        "from birdclef.atomic import atomic_path\nwith atomic_path(p) as tmp:\n    tmp.write_text('a')\ndf.to_csv(p)"
    ),
    "the final path inside the block": (
        "from birdclef.atomic import atomic_path\nwith atomic_path(p) as tmp:\n    df.to_csv(p)"
    ),
    "a temporary of another context": "import tempfile\nwith tempfile.TemporaryDirectory() as d:\n    df.to_csv(d)",
    "a temporary used in a nested function": (
        "from birdclef.atomic import atomic_dir\n"
        "with atomic_dir(p) as tmp:\n"
        "    def later(df):\n"
        "        df.to_csv(tmp / 'x.csv')"
    ),
}


@pytest.mark.parametrize("snippet", OFFENDING.values(), ids=OFFENDING.keys())
def test_the_scan_catches_a_direct_write(snippet):
    calls = scan(snippet)
    assert calls and not calls[-1].routed, calls  # each snippet's offending call is its last
    assert "<snippet>:" in str(calls[-1])  # the message names file and line


ROUTED = {
    "tmp itself": "with atomic_path(p) as tmp:\n    df.to_csv(tmp, index=False)",
    "a path built from tmp": "with atomic_dir(p) as d:\n    (d / 'a' / 'x.txt').write_text('x')",
    "an assigned name": "import numpy as np\nwith atomic_dir(p) as d:\n    q = d / 'x.npy'\n    np.save(q, a)",
    "str(tmp)": "import soundfile as sf\nwith atomic_path(p) as tmp:\n    sf.write(str(tmp), x, 1)",
    "with_suffix": "with atomic_path(p) as tmp:\n    tmp.with_suffix('.bin').write_bytes(b'')",
    "ov.save_model": "import openvino as ov\nwith atomic_path(p) as tmp:\n    ov.save_model(m, tmp)",
    "torch.save keyword": "import torch\nwith atomic.atomic_path(p) as tmp:\n    torch.save(obj, f=tmp)",
    "a handle opened on tmp": (
        "import json\nwith atomic_path(p) as tmp, open(tmp, 'w') as f:\n    json.dump({}, f, indent=2)"
    ),
    "copy onto tmp": "import shutil\nwith atomic_path(p) as tmp:\n    shutil.copyfile(src, tmp)",
}


@pytest.mark.parametrize("snippet", ROUTED.values(), ids=ROUTED.keys())
def test_the_scan_accepts_a_write_to_a_temporary(snippet):
    calls = scan(snippet)
    assert calls and all(c.routed for c in calls), calls


def test_reading_is_not_writing():
    calls = scan(
        """
        import json, soundfile as sf
        with open('x.json') as f, sf.SoundFile('a.ogg') as g:
            json.load(f)
        text = df.to_csv(index=False)  # a string, no file
        p.open().read()
        """
    )
    assert calls == []
