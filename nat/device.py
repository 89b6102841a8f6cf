"""What a device asks LabNet to program: kernel rules, sysctls and the process to start (E3)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DeviceSetup:
    """The pure result of a device's setup(): LabNet runs iptables in order, writes sysctls,
    writes `config` as JSON to the --config file and starts `argv` (if any) in the node."""

    iptables: list[list[str]] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None
    config: dict | None = None

    def extend(self, other: DeviceSetup) -> DeviceSetup:
        """Two devices on one node (e.g. NAT and dynamic filter): rules in order, one merged sysctl set."""
        return DeviceSetup(self.iptables + other.iptables, {**self.sysctls, **other.sysctls},
                           self.argv or other.argv, self.config or other.config)
