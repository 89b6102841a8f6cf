"""Issue 20 item 4: `--pcap` captures the verdict cells; the throughput phase only with `--pcap all`,
then in files of its own, capped (a snapshot of each packet's headers, a packet count per interface),
and the scope and cap said in one line of the run's output and in results.json."""

from __future__ import annotations

import pytest

from lab.cli import build_parser
from lab.errors import LabError
from lab.matrix.plan import RunPlan
from lab.matrix.runner import THROUGHPUT_PCAP
from lab.network import net as labnet
from lab.topology import loader as topo


@pytest.mark.parametrize(("argv", "value"), [([], False), (["--pcap"], "cells"), (["--pcap", "cells"], "cells"),
                                             (["--pcap", "all"], "all")])
def test_the_matrix_option(argv, value):
    args = build_parser().parse_args(["matrix", *argv])
    assert args.pcap == value


def test_a_scope_other_than_cells_or_all_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["matrix", "--pcap", "throughput"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "scope"), [(False, None), (None, None), (True, "cells"), ("cells", "cells"),
                                              ("all", "all")])
def test_scope(given, scope):
    assert labnet.pcap_scope(given) == scope


def test_an_unknown_scope_is_a_lab_error():
    with pytest.raises(LabError):
        labnet.pcap_scope("everything")


def test_the_cap_is_one_line_that_names_it():
    assert labnet.pcap_cap_line(False) is None
    cells = labnet.pcap_cap_line("cells", "quick")
    assert "\n" not in cells and "verdict cells" in cells and "not captured" in cells and "--pcap all" in cells
    every = labnet.pcap_cap_line("all", "quick")
    assert "\n" not in every and f"first {labnet.THROUGHPUT_SNAPLEN} bytes" in every
    assert f"at most {labnet.THROUGHPUT_PACKETS} packets" in every and "MB) per interface" in every
    assert labnet.pcap_cap_line(True, "off").endswith("(no throughput phase)")


def test_a_throughput_capture_holds_the_headers_of_a_packet_and_is_bounded():
    # Ethernet + IPv6 + TCP with options, and a TLS record's 5-byte header
    assert labnet.THROUGHPUT_SNAPLEN >= 14 + 40 + 60 + 5
    assert labnet.THROUGHPUT_CAP_BYTES <= 50e6


def test_the_plan_carries_the_scope_to_the_workers(tmp_path):
    for given in ("all", "cells", True, False):
        plan = RunPlan(out=tmp_path, size=1, timeout=1.0, pcap=given, scenario_file=tmp_path / "s.yaml",
                       pki=tmp_path, heartbeat=None, groups=())
        assert RunPlan.from_json(plan.to_json()).pcap == given


class Recorder(labnet.LabNet):
    """A LabNet whose programs are only recorded (no namespaces)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started: list[tuple[str, str, list[str]]] = []

    def _start_program(self, node, name, argv, ready, wait=True):
        self.started.append((node, name, argv))
        program = labnet.Program(node, name, FakeProc(), None, None, argv, ready)
        self.programs.append(program)
        return program


class FakeProc:
    returncode = 0

    def poll(self):
        return 0


def test_the_verdict_captures_are_whole_and_the_phase_gets_its_own_capped_files(tmp_path):
    for scope, phase_files in (("cells", 0), ("all", 1)):
        net = Recorder(topo.load("client-nat"), workdir=tmp_path / scope, pcap=scope)
        net.workdir.mkdir()
        net._start_captures()
        cells = list(net.started)
        assert cells and all("-s" not in argv and "-c" not in argv for _, _, argv in cells)
        assert all(argv[-1].endswith(".pcap") and not argv[-1].endswith(THROUGHPUT_PCAP) for _, _, argv in cells)
        net.started.clear()
        said = net.throughput_captures()
        assert not [p for p in net.programs if p.name in {name for _, name, _ in cells}]   # the cells' ended
        assert len(net.started) == phase_files * len(cells)
        if scope == "cells":
            assert said == "the throughput phase is not captured"
            continue
        assert "at most" in said
        for _, _, argv in net.started:
            assert argv[argv.index("-s") + 1] == str(labnet.THROUGHPUT_SNAPLEN)
            assert argv[argv.index("-c") + 1] == str(labnet.THROUGHPUT_PACKETS)
            assert argv[-1].endswith(THROUGHPUT_PCAP)


def test_no_capture_no_phase_capture(tmp_path):
    net = Recorder(topo.load("lan"), workdir=tmp_path, pcap=False)
    assert net.throughput_captures() is None and net.started == []
