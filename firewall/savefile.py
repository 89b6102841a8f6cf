"""The lines of an iptables-save file, read in one place for everyone who reads the format.

Pure: text in, one `Line` per line that says something. Two readers use it: the check that a
user's file names only interfaces its node has (lab.topology.ipsave) and the model that predicts
what its filter table does (firewall.saved). Each decides for itself what a line means to it;
here is only how the file is written:

    *filter                          a table header: the lines below stand in that table
    :FORWARD DROP [12:720]           a chain declaration: its policy ("-" for a user chain)
    [5:300] -A FORWARD -p tcp ...    a rule: `iptables-save -c` puts [packets:bytes] first
    COMMIT, # a comment, blank       nothing to read

A rule's words are split as a shell would (quotes around a --comment); a line that does not
split (an unbalanced quote) comes back with `error` set and no words, so each reader can name it
by its line.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """One line of the file that says something."""

    number: int                      # 1-based, as an editor shows it
    table: str                       # the table it stands in ("" before any *table header)
    kind: str                        # "table" | "chain" | "rule" (any command: -A, -I, -N, ...)
    text: str                        # as written, without surrounding space and counters
    words: tuple[str, ...] = ()      # a rule's words
    chain: str = ""                  # a chain declaration's chain
    policy: str = ""                 # its policy: ACCEPT, DROP, or "-" (a user chain, or none written)
    error: str | None = None         # a rule that does not split: why


def lines(text: str) -> Iterator[Line]:
    """Every table header, chain declaration and rule of an iptables-save text, in file order."""
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("[") and "]" in line:          # iptables-save -c: counters first
            line = line.split("]", 1)[1].strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            yield Line(number, table, "table", line)
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            yield Line(number, table, "chain", line, chain=name, policy=(rest.split() or ["-"])[0])
        else:
            try:
                words = tuple(shlex.split(line))
            except ValueError as exc:
                yield Line(number, table, "rule", line, error=str(exc))
                continue
            yield Line(number, table, "rule", line, words)
