#!/usr/bin/env bash
# Set up the FTPS Traversal Lab on Debian 12, as root: system packages, ProFTPD (unpacked, because
# Debian's proftpd conflicts with vsftpd), the Python virtual environment in .venv, and `ftlab` on
# PATH. Idempotent and quick on a second run: it only installs what is missing or changed.
#
#   ./setup.sh            set up
#   ./setup.sh --check    say what is missing, change nothing
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (the lab builds network namespaces and kernel rules)"
command -v apt-get >/dev/null || die "this needs Debian (apt-get not found)"

# Debian packages: what each is for.
#   mininet                 mnexec (Mininet's namespace helper); OVS comes along but is never used
#   iptables conntrack      kernel NAT, filters, NFQUEUE, the FTP conntrack helper
#   iperf3                  the baseline throughput on each data path
#   libnetfilter-queue-dev  builds the NetfilterQueue binding if no wheel fits
#   curl lftp vsftpd        third-party FTPS peers for interop tests and benchmarks
#   tcpdump                 pcaps on each side of a device
#   chromium                renders the HTML report in a browser test
#   proftpd runtime libs    for the unpacked ProFTPD
packages=(mininet iptables conntrack iperf3 libnetfilter-queue-dev curl lftp vsftpd tcpdump chromium
          python3-venv gcc python3-dev libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3
          libsodium23)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${1:-}" = "--check" ]; then
    [ ${#missing[@]} -eq 0 ] && say "all Debian packages present" || say "missing: ${missing[*]}"
    exit 0
fi
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# ProFTPD with mod_tls, unpacked into .deps/proftpd (cannot be installed beside vsftpd).
if [ ! -x .deps/proftpd/usr/sbin/proftpd ] || [ ! -e .deps/proftpd/usr/lib/proftpd/mod_tls.so ]; then
    say "unpacking ProFTPD into .deps/proftpd"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download proftpd-core proftpd-mod-crypto >/dev/null 2>&1) \
        || { apt-get update -q >/dev/null; (cd "$tmp" && apt-get download proftpd-core proftpd-mod-crypto >/dev/null); }
    mkdir -p .deps/proftpd
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" .deps/proftpd; done
fi

# The Python environment; reinstalled only when pyproject.toml changes.
stamp=.venv/.ftlab-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages into .venv"
    log=$(mktemp)
    if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } >"$log" 2>&1; then
        grep -v '^WARNING: Location' "$log" >&2
        die "pip could not install the Python packages (its output is above)"
    fi
    rm -f "$log"
    .venv/bin/python -c 'import lab, mininet, scapy, netfilterqueue, OpenSSL' \
        || die "the Python packages did not install (see pip's output above)"
    echo "$want" > "$stamp"
fi

# ftlab on PATH as well as .venv/bin/ftlab.
if [ "$(readlink /usr/local/bin/ftlab 2>/dev/null)" != "$here/.venv/bin/ftlab" ]; then
    ln -sf "$here/.venv/bin/ftlab" /usr/local/bin/ftlab
fi
say "ready: ftlab is $(command -v ftlab)"
