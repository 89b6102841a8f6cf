"""Issue 12, item 7: what a run would fail on is found by `ftlab topo check` (and before a run), each
problem one line with file:line and exit 2, never a traceback or a lab error at run time."""

from __future__ import annotations

from lab import TOPOLOGY_DIR
from lab.cli import main

BASE = (TOPOLOGY_DIR / "static-filter.yaml").read_text()


def check(tmp_path, text: str, capsys, *extra: str) -> tuple[int, str]:
    path = tmp_path / "net.yaml"
    path.write_text(text)
    code = main(["topo", "check", *extra, str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_statement_typo_gets_a_did_you_mean(tmp_path, capsys):
    text = BASE.replace("PASSIVEDATAPORTS: (60000,60100)", "PASSIVEDATAPORT: (60000,60100)")
    code, out = check(tmp_path, text, capsys)
    line = text.splitlines().index(next(x for x in text.splitlines() if "PASSIVEDATAPORT:" in x)) + 1
    assert code == 2
    assert f"net.yaml:{line}: ftp.server_statements.PASSIVEDATAPORT: unknown statement PASSIVEDATAPORT " \
           "(did you mean PASSIVEDATAPORTS?)" in out
