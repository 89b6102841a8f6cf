"""Scenario files are validated by a JSON schema (scenarios/scenarios.schema.json) and then by their
cross-references; every problem is one `file:line: field: problem`, nothing is half-loaded."""

from __future__ import annotations

import jsonschema
import pytest

from lab import SCENARIO_DIR
from lab.errors import InputError
from lab.ftps.modes import DATA_MODES, SECURITY_MODES
from lab.matrix import scenario

DEFAULT = (SCENARIO_DIR / "default.yaml").read_text()


def load_text(tmp_path, text: str) -> scenario.Scenarios:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return scenario.load(path)


def problems_of(tmp_path, text: str) -> list[str]:
    with pytest.raises(InputError) as info:
        load_text(tmp_path, text)
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def edit(old: str, new: str) -> str:
    assert old in DEFAULT, old
    return DEFAULT.replace(old, new, 1)


def test_the_schema_is_a_schema_and_takes_its_names_from_their_one_definition():
    schema = scenario.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["security"]["enum"] == list(SECURITY_MODES)
    assert schema["$defs"]["data"]["enum"] == list(DATA_MODES)
    assert schema["$defs"]["alg"]["enum"] == list(scenario.ALG_MODES)


def test_the_shipped_file_is_valid():
    s = scenario.load("default")
    assert len(s.default_cells()) == 160


def test_an_entry_of_the_wrong_type_is_named_at_its_line(tmp_path):
    """`clients: {bogus: a-string}` used to end in an AttributeError traceback."""
    text = edit("clients:\n", "clients:\n  bogus: a-string\n")
    assert problems_of(tmp_path, text) == [
        f"{tmp_path / 'mine.yaml'}:{line_of(text, 'bogus: a-string')}: clients.bogus: expected a mapping, got 'a-string'"]


#: (text in default.yaml, replaced by, a text on the line the problem is at, field, message start)
SCHEMA_CASES = [
    ("  lan:\n    title:", "  lan:\n    client_nat: nat-c\n    title:", "client_nat: nat-c",
     "pictures.lan.client_nat", "unknown key; allowed: reasoning, slide, title"),
    ('  lan:\n    title: client and server in one internal network, nothing between them\n    slide:',
     '  lan:\n    title: [not, text]\n    slide:', "title: [not, text]", "pictures.lan.title",
     "expected text, got a list"),
    ('  alg-off:\n    what: NAT devices without ALG - nothing reads or rewrites the control channel\n    alg: "off"\n',
     "  alg-off:\n    what: NAT devices without ALG - nothing reads or rewrites the control channel\n    alg: off\n",
     "alg: off", "variations.alg-off.alg", "False is not one of: scapy, kernel,"),
    ("  security: [plain, tls,", "  security: [ssl, tls,", "  security: [ssl", "matrix.security[0]",
     "'ssl' is not one of: plain, tls, tls-ccc, implicit, implicit-zos"),
    ("    first_after_ccc: other             # PWD first", "    first_after_ccc: sometimes",
     "first_after_ccc: sometimes", "clients.curl.first_after_ccc", "'sometimes' is not one of: data, other"),
    ('    active_source_port: "20"', '    active_source_port: "twenty"', "twenty",
     "servers.vsftpd.active_source_port", "'twenty' is not allowed here"),
    ("  curl: {what: curl as the client, client: curl}", "  curl: {what: curl as the client, client: curl}\n  a+b: {what: x}",
     "a+b:", "variations.a+b", "bad name: 'a+b' is not allowed here"),
    ("  - variant: lftp\n", "  - variant: lftp\n    cells: 3\n", "cells: 3", "variation_cells[7].cells", "unknown key"),
    ("  timeout_s: 20 ", "  timeout_s: -1 ", "timeout_s: -1", "defaults.timeout_s", "-1 is out of range"),
]
#: Names that must name something elsewhere in the file, and variation statements.
CROSS_REFERENCE_CASES = [
    ("  topologies: [lan,", "  topologies: [lann,", "topologies: [lann", "matrix.topologies", "'lann' has no entry in pictures"),
    ("  curl: {what: curl as the client, client: curl}", "  curl: {what: curl as the client, client: curll}",
     "client: curll", "variations.curl.client", "unknown client 'curll'; known: builtin, curl, lftp"),
    ("  - variant: lftp\n", "  - variant: lftp+nope\n", "variant: lftp+nope", "variation_cells[7].variant",
     "unknown variation 'nope'"),
    ("    server_statements: {PASSIVEDATAPORTS: null}", "    server_statements: {PASSIVEDATAPORTS: null, FROB: x}",
     "FROB: x", "variations.no-passive-range.server_statements.FROB", "unknown statement FROB"),
    ("    client_statements: {CCCNOOP: \"TRUE\"}", "    client_statements: {CCCNOOP: \"MAYBE\"}",
     "CCCNOOP: \"MAYBE\"", "variations.ccc-noop.client_statements.CCCNOOP", ""),
    ("  client: builtin\n", "  client: nobody\n", "client: nobody", "defaults.client", "unknown client 'nobody'"),
]


@pytest.mark.parametrize("old, new, needle, field, message", SCHEMA_CASES + CROSS_REFERENCE_CASES)
def test_each_problem_is_at_its_line(tmp_path, old, new, needle, field, message):
    text = edit(old, new)
    found = problems_of(tmp_path, text)
    want = f"{tmp_path / 'mine.yaml'}:{line_of(text, needle)}: {field}: {message}"
    assert any(p.startswith(want) for p in found), f"{want!r} not in {found}"


def test_a_file_that_is_not_a_scenario_file_is_named_so(tmp_path):
    # a known key at the top: the schema speaks, key by key
    assert any(p.startswith(f"{tmp_path / 'mine.yaml'}:2: nodes: unknown key; allowed:")
               for p in problems_of(tmp_path, "name: x\nnodes: {}\n"))
    found = problems_of(tmp_path, "user: alice\npassword: hunter2\n")
    assert found == [f"{tmp_path / 'mine.yaml'}:1: not a scenario file: expected a mapping with "
                     f"{', '.join(sorted(scenario.TOP_KEYS))}; found a mapping without any of them"]
    assert problems_of(tmp_path, "") == [f"{tmp_path / 'mine.yaml'}:1: the file is empty"]


def test_missing_required_sections_are_named(tmp_path):
    found = problems_of(tmp_path, "schema: ftlab.scenarios/1\nname: tiny\n")
    assert found == [f"{tmp_path / 'mine.yaml'}:1: missing required keys 'matrix', 'pictures'"]
