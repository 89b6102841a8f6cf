"""Three-way (FXP) predictions (lab/matrix/fxpwalk.py), pinned for every case of scenarios/fxp.yaml:
outcome, stage and the node that decides. tests/net/test_fxp.py runs them and requires reality to agree.
And the scenario file's problems, each at its file:line."""

from __future__ import annotations

import pytest

from lab.errors import InputError
from lab.matrix import fxprun

PINNED = {
    "fxp-nat/plain/pasv+passive-src": ("pass", None, None),
    "fxp-nat/tls/pasv+passive-src+sscn-dst": ("fail", "data-connect", "internet"),
    "fxp-nat/tls/epsv+passive-src+sscn-dst": ("pass", None, None),
    "fxp-nat/tls-ccc/pasv+passive-src+sscn-dst": ("pass", None, None),
    "fxp-nat/plain/pasv+passive-dst": ("pass", None, None),
    "fxp-nat/tls/pasv+passive-dst+sscn-src": ("pass", None, None),
    "fxp-nat/tls/pasv+passive-dst": ("fail", "data-setup", None),
    "fxp-nat/plain/pasv+passive-dst+dst-passivedataconn-noredirect": ("fail", "data-connect", None),
    "fxp-nat/plain/epsv+passive-src+src-passivedataconn-noredirect": ("fail", "data-connect", None),
    # the active server's refusal (504) decides: its node, as a two-party server's refusal names it
    "fxp-nat/plain/pasv+passive-dst+src-portcommandipaddr-noredirect": ("fail", "data-setup", "server-b"),
    "fxp-nat/tls/epsv+passive-src+sscn-dst+dst-portcommandipaddr-noredirect": ("fail", "data-setup", "server-a"),
    "fxp-filter/plain/pasv+passive-src": ("fail", "data-connect", "fw"),
    "fxp-filter/plain/pasv+passive-dst": ("fail", "data-connect", "fw"),
    "fxp-filter/tls-ccc/epsv+passive-src+sscn-dst": ("fail", "data-connect", "fw"),
}


def test_every_case_is_pinned_with_its_reason():
    cases = fxprun.load("fxp")
    assert sorted(c.id for c in cases) == sorted(PINNED)
    for case in cases:
        pred = fxprun.predict(case)
        assert pred.key == PINNED[case.id], (case.id, pred)
        if "noredirect" in case.id:
            assert ("PASSIVEDATACONN" if "passivedataconn" in case.id else "PORTCOMMANDIPADDR") in pred.reason


def test_an_fxp_file_is_told_apart_from_a_matrix_file():
    assert fxprun.is_fxp("fxp") and not fxprun.is_fxp("default") and not fxprun.is_fxp("nonexistent")


@pytest.mark.parametrize("edit, bad, needle", [
    ("picture: fxp-nat, security: plain", "picture: nowhere, security: plain", "picture"),
    ("security: plain, data: pasv, passive: src}", "security: plain, data: port, passive: src}", "data"),
    ("{dst: {PASSIVEDATACONN: NOREDIRECT}}", "{dst: {PASSIVEDATACONN: REDIRECT}}", "PASSIVEDATACONN"),
])
def test_problems_name_file_and_line(tmp_path, edit, bad, needle):
    from lab import SCENARIO_DIR

    text = (SCENARIO_DIR / "fxp.yaml").read_text()
    f = tmp_path / "mine.yaml"
    f.write_text(text.replace(edit, bad, 1))
    with pytest.raises(InputError) as err:
        fxprun.load(str(f))
    expect = next(i for i, t in enumerate(text.splitlines(), 1) if edit in t)
    assert any(p.file == str(f) and p.line == expect and needle in f"{p.field} {p.message}" for p in err.value.problems), \
        err.value
