""""What works here": per network, the ways of doing FTP that got through, grouped by what stays
secret from the devices on the path. Pure, from a results document's cells.

    works_here(cells) -> WorksHere       # .lines(): what a person reads, in the page and the terminal
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.ftps.modes import CCC_MODES, ENCRYPTED_CONTROL
from lab.report.results import is_not_run

#: The groups, in the order a security-minded engineer wants them: (title, security modes).
GROUPS = (
    ("encrypted control and data", ENCRYPTED_CONTROL),
    ("control in clear after login (CCC), data encrypted", CCC_MODES),
    ("plain FTP, nothing encrypted", ("plain",)),
)


@dataclass
class WorksHere:
    passed: list[str] = field(default_factory=list)       # "tls/epsv", ... of the base cells
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)      # cells an interrupted run did not run (all variants)
    variants: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)   # variant -> (pass, fail)

    @property
    def encrypted(self) -> list[str]:
        """The passing methods whose control channel no device on the path can read."""
        return [m for m in self.passed if m.split("/")[0] in ENCRYPTED_CONTROL]

    def lines(self) -> list[str]:
        out = []
        total = len(self.passed) + len(self.failed)
        undecided = ([f"{len(self.errors)} not decided: lab errors"] if self.errors else []) + \
                    ([f"{len(self.not_run)} not run"] if self.not_run else [])
        if total:
            out.append(f"{len(self.passed)} of {total} ways get through" +
                       (f" ({'; '.join(undecided)})" if undecided else ""))
        elif undecided:
            out.append("nothing decided here: " + "; ".join(undecided))
        for title, modes in GROUPS:
            got = [m for m in self.passed if m.split("/")[0] in modes]
            tried = [m for m in self.passed + self.failed if m.split("/")[0] in modes]
            if tried:
                out.append(f"{title}: {', '.join(got) if got else 'none'}")
        for variant, (passed, failed) in self.variants.items():
            out.append(f"+{variant}: " + (f"pass {', '.join(passed)}" if passed else "nothing passes")
                       + (f"; fail {', '.join(failed)}" if failed and passed else ""))
        return out


def works_here(cells: list[dict]) -> WorksHere:
    """What passed and failed among a network's cells (lab errors and cells not run decide nothing)."""
    found = WorksHere()
    for s in cells:
        method = f"{s['security']}/{s['data']}"
        if is_not_run(s):
            found.not_run.append(method + (f"+{s['variant']}" if s.get("variant") else ""))
            continue
        if s.get("variant"):
            passed, failed = found.variants.setdefault(s["variant"], ([], []))
            if s["outcome"] in ("pass", "fail"):
                (passed if s["outcome"] == "pass" else failed).append(method)
            continue
        {"pass": found.passed, "fail": found.failed}.get(s["outcome"], found.errors).append(method)
    return found
