"""firewall/static.py reads an iptables-save file once per version of it: a ruleset edited inside one
process (a student's `course check` after an edit, a test that rewrites a file) is judged from the new
text, also when the edit keeps the size or lands within the same second."""

from __future__ import annotations

import os
from types import SimpleNamespace

from firewall import static

OLD = "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 21 -j ACCEPT\nCOMMIT\n"


def test_an_edited_ruleset_is_read_again(tmp_path):
    path = tmp_path / "fw.rules"
    path.write_text(OLD)
    fw = SimpleNamespace(iptables_save=str(path))
    assert static.saved_text(fw) == OLD
    assert static.saved_text(fw) is static.saved_text(fw)         # unchanged: read once
    st = path.stat()
    same_size = OLD.replace("21", "22")
    path.write_text(same_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))       # same size, 1 ns later
    assert static.saved_text(fw) == same_size
    longer = OLD.replace("21", "990")
    path.write_text(longer)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))       # same mtime, another size
    assert static.saved_text(fw) == longer
