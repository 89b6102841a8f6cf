"""Ctrl-C is exit 130 even when the lab error it caused arrives first."""

import argparse
import os
import signal

from lab import cli
from lab.errors import LabError


def _parser_running(func) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.set_defaults(func=func)
    return parser


def test_lab_error_after_ctrl_c_is_an_interrupt(monkeypatch, capsys):
    def program_killed_by_the_group_sigint(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)     # the foreground group's Ctrl-C ...
        except KeyboardInterrupt:
            pass                                    # ... caught on the way (subprocess's cleanup)
        raise LabError("client: `iperf3 -c ...` failed (exit 1): iperf3: interrupt")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(program_killed_by_the_group_sigint))
    assert cli.main([]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_lab_error_without_ctrl_c_keeps_its_exit_code(monkeypatch, capsys):
    def fails(args):
        raise LabError("the lab broke")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(fails))
    assert cli.main([]) == 3
    assert "the lab broke" in capsys.readouterr().err
