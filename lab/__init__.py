"""FTPS Traversal Lab: will secure FTP get through this network? Answered with real packets."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root: shipped topologies and scenarios live beside the packages.
ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY_DIR = ROOT / "topologies"
SCENARIO_DIR = ROOT / "scenarios"
REPORT_DIR = ROOT / "reports"
