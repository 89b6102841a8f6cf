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

import re
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


# -- what the lab refuses in a file -----------------------------------------------------------------

#: Options that make iptables-restore (or the kernel for it) read the host's file system or act
#: outside the namespace. (option, the module or target it belongs to or None, why).
_REFUSED_OPTIONS = (
    ("--object-pinned", "bpf", "`-m bpf --object-pinned` reads a pinned BPF object of the host's file system: "
                               "give the program inline with --bytecode"),
    ("--path", "cgroup", "`-m cgroup --path` names a cgroup of the host's cgroup tree: use --cgroup CLASSID"),
)
_REFUSED_TARGETS = {
    "LED": "`-j LED` creates an LED trigger of the whole host, outside the lab's namespaces",
    "IDLETIMER": "`-j IDLETIMER` creates files in the host's sysfs (/sys/class/xt_idletimer), outside the "
                 "lab's namespaces",
}
_BY_NAME = {"--uid-owner": "user", "--gid-owner": "group"}
_EXTENSION = ("-m", "--match", "-j", "--jump", "-g", "--goto")


def refused(text: str) -> list[tuple[int, str]]:
    """What the lab refuses before iptables-restore reads the file: what reads the host's file
    system (a pinned BPF object, a cgroup path, a user or group name, an extension named by a path,
    a --modprobe program) or acts outside the namespace (LED, IDLETIMER). Every one, as (line,
    problem). Pure."""
    problems = []
    for line in lines(text):
        if line.kind != "rule" or line.error is not None:
            continue
        words = line.words
        modules = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-m", "--match")}
        targets = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "--jump")}
        if any(w in ("-M", "--modprobe") or w.startswith("--modprobe=") for w in words):
            problems.append((line.number, "`--modprobe` names a program of the host to run: leave it out"))
        for i, word in enumerate(words[:-1]):
            if word in _EXTENSION and "/" in words[i + 1]:
                problems.append((line.number, f"`{word} {words[i + 1]}`: an extension is named, not given as a path"))
        for option, module, why in _REFUSED_OPTIONS:
            if option in words and module in modules:
                problems.append((line.number, why))
        problems += [(line.number, why) for target, why in _REFUSED_TARGETS.items() if target in targets]
        for i, word in enumerate(words[:-1]):
            value = words[i + 1]
            if word in _BY_NAME and not re.fullmatch(r"\d+(-\d+)?", value):
                problems.append((line.number, f"`{word} {value}`: a {_BY_NAME[word]} name is looked up in the "
                                              f"host's database: write the number"))
    return problems


# -- running a loader where only the ruleset is visible -------------------------------------------------

#: sh script: `sh -c SANDBOX ftlab-sandbox COPY TOOL ARGS...` in a new, private mount namespace.
#: It builds a root on a tmpfs that holds /usr (without share, local, src, include, games), the
#: /bin /sbin /lib* links, a /etc with only services, protocols and ld.so.cache, /dev/null, the
#: tool's symlink chain (Debian's /etc/alternatives), and with COPY=1 the last argument (the
#: ruleset, read before anything is mounted) at the same path; then runs the tool chrooted there
#: (`unshare --root`), in the same working directory. An include (or anything else that names a
#: file) finds nothing of the host's: no /etc, /home, /root, /tmp, /var, /work, /proc, /sys.
SANDBOX = r"""set -eu
copy=$1; shift
for f; do :; done
case $f in /*) ;; *) f=$PWD/$f ;; esac
if [ "$copy" = 1 ]; then exec 3<"$f"; fi
mount -t tmpfs -o mode=0755 ftlab-sandbox /tmp
r=/tmp/root
mkdir -m 0755 $r $r/usr $r/etc $r/run $r/dev
mount --rbind /usr $r/usr
for d in share local src include games; do
  if [ -d $r/usr/$d ]; then mount -t tmpfs -o mode=0755 ftlab-sandbox $r/usr/$d; fi
done
for d in bin sbin lib lib64 lib32 libx32; do
  if [ -L /$d ]; then ln -s "$(readlink /$d)" $r/$d; elif [ -d /$d ]; then mkdir $r/$d; mount --rbind /$d $r/$d; fi
done
for e in services protocols ld.so.cache; do
  if [ -f /etc/$e ]; then cat /etc/$e > $r/etc/$e; fi
done
touch $r/dev/null
mount --bind /dev/null $r/dev/null
p=$(command -v "$1")
while [ -L "$p" ]; do
  t=$(readlink "$p")
  case $t in /*) ;; *) t=${p%/*}/$t ;; esac
  [ -e "$r$p" ] || [ -L "$r$p" ] || { mkdir -p "$r${p%/*}"; ln -s "$t" "$r$p"; }
  p=$t
done
if [ "$copy" = 1 ]; then mkdir -p "$r${f%/*}"; cat <&3 > "$r$f"; exec 3<&-; fi
mkdir -p "$r$PWD"
exec unshare --root=$r --wd="$PWD" "$@"
"""


def sandboxed(argv: list[str], *, file: bool = True, namespaces: tuple[str, ...] = ()) -> list[str]:
    """argv (nft, iptables-restore) run where nothing of the host's file system is visible but what
    it needs to run (SANDBOX): with file=True its last argument, the ruleset, is the one file of
    the host it sees, at the same path (so errors name it as given); file=False: it reads stdin.
    `namespaces`: more unshare options (a throw-away --net, --user --map-root-user when not root).
    A prefix too: `[*sandboxed(["nft", "-f"]), path]` is the same as `sandboxed(["nft", "-f", path])`."""
    return ["unshare", *namespaces, "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "ftlab-sandbox",
            "1" if file else "0", *argv]
