#!/usr/bin/env bash
# Set up the FTPS Traversal Lab on Debian 12, as root: the Debian packages listed in `tools`, ProFTPD
# (unpacked, because Debian's proftpd conflicts with vsftpd), the Python virtual environment in .venv,
# and `ftlab` on PATH. Idempotent and quick on a second run: it only installs what is missing or changed.
#
#   ./setup.sh            set up
#   ./setup.sh --check    say what is missing, change nothing; exit 1 if anything is
#
# An installed lab (pip install, no checkout) ships this script and `tools` as package data, and
# `ftlab setup [--check]` runs it with FTLAB_PYTHON (that lab's interpreter) and FTLAB_DEPS_BASE (the
# folder whose .deps/ that lab reads ProFTPD from): then the Debian packages and ProFTPD are set up
# as here, the Python packages are pip's and are only checked, and nothing is linked.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
installed=${FTLAB_PYTHON:-}
cd "${FTLAB_DEPS_BASE:-$here}"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

check=no
case "${1:-}" in
    "") ;;
    --check) check=yes ;;
    *) die "unknown argument ${1}; use ./setup.sh or ./setup.sh --check" ;;
esac

# Programs are looked up where root finds them, also when --check runs as another user.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# -- the list: `tools` (package, then the programs and files it provides) --------------------------
packages=()      # installed with apt-get
unpacked=()      # unpacked into .deps/proftpd
provides=()      # "package program-or-path" pairs
while read -r line; do
    line=${line%%#*}
    read -r -a words <<<"$line"
    [ ${#words[@]} -gt 0 ] || continue
    pkg=${words[0]}
    if [ "${pkg%:unpack}" != "$pkg" ]; then unpacked+=("${pkg%:unpack}"); else packages+=("$pkg"); fi
    for thing in "${words[@]:1}"; do
        [ "$thing" = "-" ] || provides+=("${pkg%:unpack} $thing")
    done
done < "$here/tools"
[ ${#packages[@]} -gt 0 ] || die "the list of tools ($here/tools) is empty or unreadable"

missing_packages() {
    command -v dpkg-query >/dev/null || { printf '%s\n' "${packages[@]}"; return; }
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# What each package should provide and does not: "thing (package)".
missing_provides() {
    for pair in "${provides[@]}"; do
        pkg=${pair%% *} thing=${pair#* }
        case "$thing" in
            */*) [ -e "$thing" ] || echo "$thing ($pkg)" ;;
            *) command -v "$thing" >/dev/null || echo "$thing ($pkg)" ;;
        esac
    done
}

# Libraries the unpacked ProFTPD needs and the system lacks.
missing_libraries() {
    for f in .deps/proftpd/usr/sbin/proftpd .deps/proftpd/usr/lib/proftpd/mod_tls.so; do
        [ -e "$f" ] || continue
        LD_LIBRARY_PATH=.deps/proftpd/usr/lib ldd "$f" 2>/dev/null | awk -v f="$f" '/not found/ {print $1 " (needed by " f ")"}'
    done
}

venv_current() {
    [ -x .venv/bin/python ] && [ "$(cat .venv/.ftlab-installed 2>/dev/null)" = "$(sha256sum pyproject.toml | cut -d' ' -f1)" ]
}

# The requirements of pyproject.toml (and its test extra) that .venv does not satisfy, one a line;
# of an installed lab, those of its distribution (without extras) that its interpreter does not.
missing_python() {
    if [ -n "$installed" ]; then
        "$installed" - installed <<<"$check_requirements" 2>&1
        return
    fi
    [ -x .venv/bin/python ] || { echo "the .venv itself"; return; }
    .venv/bin/python - <<<"$check_requirements" 2>&1
}
check_requirements=$(cat <<'PY'
import importlib.metadata as md
import sys
import tomllib

if sys.argv[1:] == ["installed"]:
    wanted = [r for r in md.requires("ftps-traversal-lab") or [] if "extra" not in r]
else:
    project = tomllib.load(open("pyproject.toml", "rb"))["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
try:
    from packaging.requirements import Requirement
except ImportError:          # a bare venv: pip's own copy
    try:
        from pip._vendor.packaging.requirements import Requirement
    except ImportError:
        print("\n".join(wanted))
        raise SystemExit(0) from None
for text in wanted:
    req = Requirement(text)
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        print(text)
        continue
    if not req.specifier.contains(version, prereleases=True):
        print(f"{text} (installed: {version})")
PY
)

imports='import lab, mininet, scapy, netfilterqueue, OpenSSL, jsonschema'

if [ "$check" = yes ]; then
    problems=0
    report() {   # report WHAT ITEMS: the items one per line
        [ -n "$2" ] || return 0
        say "missing $1: $(paste -sd, <<<"$2" | sed 's/,/, /g')"
        problems=1
    }
    report "Debian packages" "$(missing_packages)"
    report "programs or files" "$(missing_provides)"
    report "libraries" "$(missing_libraries)"
    if [ -n "$installed" ]; then
        report "Python packages of ftps-traversal-lab" "$(missing_python)"
        "$installed" -c "$imports" 2>/dev/null \
            || { say "the lab's Python ($installed) cannot import the lab's packages"; problems=1; }
    else
        report "Python packages in .venv" "$(missing_python)"
        if [ -x .venv/bin/python ] && ! .venv/bin/python -c "$imports" 2>/dev/null; then
            say "the Python environment .venv cannot import the lab's packages"; problems=1
        fi
        [ "$(readlink /usr/local/bin/ftlab 2>/dev/null)" = "$here/.venv/bin/ftlab" ] \
            || { say "ftlab is not linked into /usr/local/bin"; problems=1; }
    fi
    [ "$problems" -eq 0 ] && say "everything is in place"
    exit "$problems"
fi

[ "$(id -u)" -eq 0 ] || die "run as root (the lab builds network namespaces and kernel rules)"
command -v apt-get >/dev/null || die "this needs Debian (apt-get not found)"

# -- Debian packages ----------------------------------------------------------------------------------
mapfile -t missing < <(missing_packages)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- ProFTPD with mod_tls, unpacked into .deps/proftpd (cannot be installed beside vsftpd) -------------
if [ -n "$(missing_provides | grep '^\.deps/' || true)" ]; then
    say "unpacking ProFTPD into .deps/proftpd"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download "${unpacked[@]}" >/dev/null 2>&1) \
        || { apt-get update -q >/dev/null; (cd "$tmp" && apt-get download "${unpacked[@]}" >/dev/null); }
    mkdir -p .deps/proftpd
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" .deps/proftpd; done
fi

# -- the Python environment; reinstalled only when pyproject.toml changes -------------------------------
if [ -n "$installed" ]; then
    left=$(missing_python)
    [ -z "$left" ] || die "the lab's Python packages are not all installed (pip install the lab again): $(paste -sd, <<<"$left" | sed 's/,/, /g')"
elif ! venv_current || [ -n "$(missing_python)" ]; then
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv"
        python3 -m venv .venv
    fi
    say "installing Python packages into .venv"
    log=$(mktemp)
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } >"$log" 2>&1; then
        grep -v '^WARNING: Location' "$log" >&2
        die "pip could not install the Python packages (its output is above)"
    fi
    rm -f "$log"
    .venv/bin/python -c "$imports" \
        || die "the Python packages did not install (see pip's output above)"
    sha256sum pyproject.toml | cut -d' ' -f1 > .venv/.ftlab-installed
fi

# -- ftlab on PATH as well as .venv/bin/ftlab (an installed lab's ftlab is where pip put it) ----------
if [ -z "$installed" ] && [ "$(readlink /usr/local/bin/ftlab 2>/dev/null)" != "$here/.venv/bin/ftlab" ]; then
    ln -sf "$here/.venv/bin/ftlab" /usr/local/bin/ftlab
fi

# Whatever the list names must now be there: a package that does not provide what `tools` says
# (renamed, split) is found here, not in the middle of a test.
left=$(missing_provides; missing_libraries)
[ -z "$left" ] || die "installed, but still missing: $(paste -sd, <<<"$left" | sed 's/,/, /g')"
if [ -n "$installed" ]; then
    say "ready: $(dirname "$installed")/ftlab"
else
    say "ready: ftlab is $(command -v ftlab)"
fi
