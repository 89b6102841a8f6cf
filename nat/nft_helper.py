"""The kernel's FTP helper attached the nftables way: `alg: kernel-nft`, a second reference device.

    nat: {alg: kernel-nft}   ->  nat.nft_helper.setup(view)

The same helper as `alg: kernel` (nf_conntrack_ftp + nf_nat_ftp: the same parser, the same blind
spot after CCC, the same model), but assigned as an nftables `ct helper` object, as a Debian
machine with nftables does it, instead of iptables' `-t raw -j CT --helper ftp`:

    table inet ftlab-helper {
        ct helper ftp { type "ftp" protocol tcp; l3proto inet; }
        chain prerouting { type filter hook prerouting priority filter; tcp dport { 21, 990 } ct helper set "ftp"; }
    }

The chain runs after conntrack (priority filter, 0 > -200) and after DNAT (-100), as nft(8)
requires for `ct helper set`. Everything else is the kernel helper's: RELATED connections accepted
in FORWARD, and `python -m nat.kernel_helper` reporting the kernel's expectations as events.
Kernel features: the conntrack FTP helper through an nft ct helper object.
"""

from __future__ import annotations

from lab.devkit import features
from lab.devkit.device import Device, DeviceSetup
from lab.devkit.view import NodeView
from nat import kernel_helper

TABLE = "ftlab-helper"
HELPER = "ftp"


def nft_rules(ports: tuple[int, ...]) -> list[list[str]]:
    """The nft commands (one argv each) that attach the FTP helper to connections to `ports`."""
    nft = ["nft", "add"]
    return [
        [*nft, "table", "inet", TABLE],
        [*nft, "ct", "helper", "inet", TABLE, HELPER, "{", "type", '"ftp"', "protocol", "tcp", ";",
         "l3proto", "inet", ";", "}"],
        [*nft, "chain", "inet", TABLE, "prerouting", "{", "type", "filter", "hook", "prerouting", "priority",
         "filter", ";", "}"],
        [*nft, "rule", "inet", TABLE, "prerouting", "tcp", "dport", "{", ", ".join(map(str, ports)), "}",
         "ct", "helper", "set", f'"{HELPER}"'],
    ]


def setup(view: NodeView) -> DeviceSetup:
    kernel = kernel_helper.setup(view)
    # the kernel helper's rules without its iptables helper assignment (raw table), ours instead
    kept = [argv for argv in kernel.iptables if "raw" not in argv]
    return DeviceSetup(iptables=[*nft_rules(view.control_ports), *kept], sysctls=kernel.sysctls,
                       argv=kernel.argv, config=kernel.config)


DEVICE = Device(
    name="nft-helper", section="nat", applies=lambda view: view.section.alg == "kernel-nft", setup=setup,
    program="nat.kernel_helper", model=kernel_helper.DEVICE.model, events=kernel_helper.DEVICE.events,
    features=(features.NFT_CT_HELPER, features.CONNTRACK_MARK),
)
