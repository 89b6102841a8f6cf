"""FTPS Traversal Lab: will secure FTP get through this network? Answered with real packets."""

from pathlib import Path

__version__ = "0.1.0"

#: Where the shipped data lives (topologies/, scenarios/, course/, reports/'s schema, tools, setup.sh):
#: the repository root in a checkout, beside the packages; in an installed wheel, lab/_shipped
#: (pyproject.toml maps those files there as package data).
_HERE = Path(__file__).resolve().parent
ROOT = _HERE / "_shipped" if (_HERE / "_shipped").is_dir() else _HERE.parent
TOPOLOGY_DIR = ROOT / "topologies"
SCENARIO_DIR = ROOT / "scenarios"
REPORT_DIR = ROOT / "reports"
