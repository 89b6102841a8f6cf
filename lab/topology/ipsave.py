"""A user's iptables-save file, checked before any run: every problem with its file:line.

Two kinds of check:

- pure ones on the text (`interface_problems`): a rule that names an interface (`-i`, `-o`) the
  firewall's node does not have would match nothing in the lab, silently;
- loading it for real (`restore_problems`): `iptables-restore --test`, then a real
  `iptables-restore`, in a throw-away network namespace (`unshare --net`, with a user namespace
  when not root) that dies with the command, so nothing of the host is touched. --test alone
  misses what only loading finds (a jump to a chain the file never declares, reported by
  iptables at the COMMIT line: here at the lines that jump). iptables-restore stops at the first
  error; the offending line is commented out and the file tried again, so every problem is
  listed in one pass (at most MAX_PROBLEMS).

The lab loads the file the same way at run time (lab.network.net.LabNet._restore), and
`restore_error` reads iptables-restore's complaint for both.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from firewall import savefile
from lab.errors import Problem

MAX_PROBLEMS = 50
RESTORE_TIMEOUT = 10.0
INTERFACE_OPTIONS = {"-i": "-i", "--in-interface": "-i", "-o": "-o", "--out-interface": "-o"}
JUMP_OPTIONS = ("-j", "--jump", "-g", "--goto")
RULE_COMMANDS = ("-A", "--append", "-I", "--insert")
_ERROR_LINE = re.compile(r"(?:line:? )(\d+)")
_PREFIX = re.compile(r"^iptables-restore: (line \d+ failed: )?")
_MISSING_CHAIN = re.compile(r"Chain '([^']+)' does not exist")


@dataclass(frozen=True)
class Rule:
    """One `-A CHAIN ...` (or `-I`) line of the file, split as a shell would, counters left out."""
    line: int
    text: str
    table: str
    words: tuple[str, ...]

    def values(self, options) -> list[str]:
        """The values given to any of `options` in this rule (a `!` before one is skipped)."""
        return [self.words[i + 1] for i, w in enumerate(self.words[:-1]) if w in options]


def rules(text: str) -> tuple[list[Rule], list[Problem]]:
    """The rule lines of an iptables-save text (`-A`, and `-I` that a hand-written file may use;
    counters skipped), and lines that do not split (unbalanced quotes)."""
    found, problems = [], []
    for line in savefile.lines(text):
        if line.error is not None:
            problems.append(Problem("", line.number, "", f"`{line.text}`: {line.error}"))
        elif line.kind == "rule" and line.words and line.words[0] in RULE_COMMANDS:
            found.append(Rule(line.number, line.text, line.table, line.words))
    return found, problems


def interface_problems(text: str, file: str, node: str, interfaces: list[str]) -> list[Problem]:
    """Each rule naming an interface `node` does not have (`eth+` is a prefix, as iptables reads it)."""
    found, problems = rules(text)
    out = [Problem(file, p.line, p.field, p.message) for p in problems]
    have = [*interfaces, "lo"]
    for rule in found:
        for i, word in enumerate(rule.words[:-1]):
            option = INTERFACE_OPTIONS.get(word)
            if option is None:
                continue
            name = rule.words[i + 1]
            if name.endswith("+") and any(n.startswith(name[:-1]) for n in have):
                continue
            if name not in have:
                out.append(Problem(file, rule.line, option, f"{node} has no interface {name!r} "
                                   f"(its interfaces: {', '.join(interfaces)}); `{rule.text}` would never match"))
    return out


# -- loading it in a throw-away namespace -------------------------------------------------------------

def throwaway_argv(argv: list[str]) -> list[str]:
    """argv in a network namespace of its own, gone when it exits (a user namespace when not root),
    in the sandbox (firewall.savefile.sandboxed: it reads stdin and sees no file of the host's)."""
    user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
    return savefile.sandboxed(argv, file=False, namespaces=(*user, "--net"))


def restore_error(stderr: str) -> tuple[int | None, str]:
    """(line, reason) of iptables-restore's complaint; line None when it names none."""
    found = _ERROR_LINE.search(stderr)
    reason = next((ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("Error occurred", "Try `"))),
                  "").split("): ", 1)[-1].strip()
    reason = _PREFIX.sub("", reason)
    return (int(found.group(1)) if found else None), reason or stderr.strip()


def describe_restore_error(path: Path, stderr: str) -> str:
    """iptables-restore's complaint as "FILE:LINE: does not load: `the line`: reason"."""
    number, reason = restore_error(stderr)
    if number is None:
        return f"{path} does not load: {stderr.strip()}"
    try:
        text = path.read_text().splitlines()[number - 1].strip()
    except (OSError, IndexError):
        text = "?"
    return f"{path}:{number}: does not load: `{text}`: {reason}"


def _restore(text: str, test: bool) -> subprocess.CompletedProcess:
    argv = throwaway_argv(["iptables-restore", *(["--test"] if test else [])])
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=RESTORE_TIMEOUT)


@functools.cache
def can_restore() -> str | None:
    """None when a throw-away namespace can load a ruleset here; else why not (one line). Asked
    once per process: the answer is the machine's."""
    try:
        done = _restore("*filter\nCOMMIT\n", test=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    return ((done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"])[-1]


def restore_problems(text: str, file: str) -> list[Problem]:
    """Every line iptables-restore refuses, each with its reason (empty: the file loads)."""
    lines = text.splitlines()
    problems: list[Problem] = []
    while len(problems) < MAX_PROBLEMS:
        current = "\n".join(lines) + "\n"
        done = _restore(current, test=True)
        if done.returncode == 0:
            done = _restore(current, test=False)     # what only loading finds
            if done.returncode == 0:
                break
        number, reason = restore_error(done.stderr or done.stdout)
        missing = _MISSING_CHAIN.search(reason)
        jumps = [r.line for r in rules(current)[0] if missing and missing.group(1) in r.values(JUMP_OPTIONS)]
        bad = jumps or ([number] if number is not None and 1 <= number <= len(lines) else [])
        if not bad or any(lines[n - 1].startswith("#ftlab") for n in bad):
            problems.append(Problem(file, number or 0, "", f"does not load: {reason}"))
            break
        for n in bad:
            what = f"jumps to chain {missing.group(1)!r}, which the file does not declare (:{missing.group(1)} - [0:0])" \
                if missing else reason
            problems.append(Problem(file, n, "", f"`{lines[n - 1].strip()}`: {what}"))
            lines[n - 1] = "#ftlab " + lines[n - 1]
        first = lines[bad[0] - 1].removeprefix("#ftlab ").strip()
        if first == "COMMIT" or first.startswith("*"):
            break                        # the table's frame is broken: what follows would only repeat it
    else:
        problems.append(Problem(file, 0, "", f"more than {MAX_PROBLEMS} problems; fix these first"))
    return sorted(problems, key=lambda p: p.line)
