"""Rules every module of the package keeps, checked over its source rather than by running it."""

from __future__ import annotations

import ast
from pathlib import Path

import ferkit

PACKAGE = Path(ferkit.__file__).parent
TEXT_CALLS = {"read_text", "write_text"}  # pathlib: always text
MAYBE_TEXT = {"open"}  # builtin open and Path.open: text unless the mode says "b"


def _mode(call: ast.Call) -> str:
    """The mode argument when it is a literal ("r" when absent, "" when it cannot be read)."""
    given = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if given is None:
        # open(path, mode) / path.open(mode)
        position = 1 if isinstance(call.func, ast.Name) else 0
        given = call.args[position] if len(call.args) > position else None
    if given is None:
        return "r"
    return given.value if isinstance(given, ast.Constant) and isinstance(given.value, str) else ""


def _needs_encoding(call: ast.Call) -> bool:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name in TEXT_CALLS:
        return True
    if name not in MAYBE_TEXT or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                  and func.value.id in {"os", "Image", "zipfile", "archive", "zf"}):
        return False
    if isinstance(func, ast.Attribute) and not call.args and not call.keywords:
        return True  # path.open(): text
    mode = _mode(call)
    return bool(mode) and "b" not in mode


def test_every_text_file_is_read_and_written_as_utf8():
    """Without an encoding Python uses the locale's: cp1252 on most Windows machines, where the web
    page's "…" became "â€¦" and compare.md's "–" a byte no UTF-8 reader accepts."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and _needs_encoding(node)
                    and not any(k.arg == "encoding" for k in node.keywords)):
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not missing, f"text I/O without encoding=: {', '.join(missing)}"


def test_the_scan_sees_what_it_must():
    """The rule above finds each kind of call it is meant to: otherwise it passes for nothing."""
    calls = {
        'open(p)': True, 'open(p, "w", newline="")': True, 'open(p, "rb")': False,
        'open(p, mode="wb")': False, 'p.read_text()': True, 'p.write_text(s)': True, 'p.open()': True,
        'os.open(p, 1)': False, 'Image.open(b)': False, 'archive.open(name)': False,
    }
    for source, expected in calls.items():
        call = ast.parse(source).body[0].value
        assert _needs_encoding(call) is expected, source


def test_no_module_is_over_400_lines():
    """A module does one job and stays readable at one sitting: one past 400 lines (runs.py reached 439
    in session 53) is split along its jobs, not let grow."""
    long = {str(path.relative_to(PACKAGE)): lines for path in sorted(PACKAGE.rglob("*.py"))
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"modules over 400 lines: {long}"
