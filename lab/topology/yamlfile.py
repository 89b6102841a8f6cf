"""YAML input files that remember where things are, and problems with their lines.

Topology and scenario files are hand-written by users and must be treated as hostile: the file is
read through `read_input` (a regular file, at most MAX_BYTES, UTF-8), parsed into Mapping/Sequence
objects that know the line of every key and item, and refused when it is nested deeper than
MAX_DEPTH or its aliases expand to more than MAX_NODES values (a "billion laughs" file is a few
lines). Every problem is a lab.errors.Problem with the file and a line. Nothing here echoes more of a
file than a short excerpt (`show`): a file that is not ours (a symlink to /etc/shadow) is not
printed back.

`schema_problems` checks a parsed file against a JSON schema and words each violation as a problem
at the line of the key or item it is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.errors import InputError, Problem, read_input

#: Real topology and scenario files are a few KiB; PyYAML reads about 1 MB a second.
MAX_BYTES = 1024 * 1024
#: The deepest real files are about 7 levels (nodes.fw.firewall.rules[0].dport).
MAX_DEPTH = 64
#: Values a file may hold once its aliases (*name) are expanded.
MAX_NODES = 100_000
#: The most of a value a message shows.
EXCERPT = 40


class Mapping(dict):
    """A YAML mapping plus the line of the mapping and of each key."""

    line: int = 0
    key_lines: dict
    raw: dict      # the text of scalar values as written (YAML 1.1 turns `off` or `NO` into false)

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class Sequence(list):
    """A YAML sequence plus the line of the sequence and of each item."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Limit(yaml.MarkedYAMLError):
    """A file past one of the limits above (not a syntax error)."""


class _LineLoader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self.key_problems: list[tuple[int, str]] = []
        self.depth = 0
        self.merged: dict[int, int] = {}     # id of a mapping node -> pairs merged into it (_flatten)

    def compose_node(self, parent, index):
        # The composer recurses once per level: refuse a deep file before Python's stack does.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Limit(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        # PyYAML's own constructors fail with ValueError, IndexError, ... (not YAMLError) on a
        # bad explicitly tagged value such as `!!int x` or an empty `!!timestamp`.
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(None, None, f"bad {tag} value ({_cut(str(exc))})",
                                                    node.start_mark) from None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode):
    data = Mapping()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    data.raw = {}
    yield data
    # Merge keys (`<<: *anchor`, `<<: [*a, *b]`): the merged pairs come first, then the mapping's
    # own. A merged key is a default that the mapping's own key overrides, and of two merged mappings
    # the first wins (YAML's merge rule; the pairs come last-first): neither is a duplicate. Two own
    # keys are.
    merged = _flatten(loader, node)
    own_keys: set = set()
    for n, (key_node, value_node) in enumerate(node.value):
        line = key_node.start_mark.line + 1
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            loader.key_problems.append((line, "a key must be a plain name"))
            continue
        if n >= merged:
            if key in own_keys:
                loader.key_problems.append((line, f"duplicate key {show(key)} (first at line {data.key_lines[key]})"))
            own_keys.add(key)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line
        if isinstance(value_node, yaml.ScalarNode):
            data.raw[key] = value_node.value


MERGE = "tag:yaml.org,2002:merge"


def _flatten(loader: _LineLoader, node: yaml.MappingNode) -> int:
    """Flatten the node's merge keys (PyYAML's flatten_mapping), the merged mappings' own first, so
    that each mapping's own keys are counted before anything is merged into it; how many pairs at
    the start of node.value were merged in."""
    if id(node) in loader.merged:
        return loader.merged[id(node)]
    loader.merged[id(node)] = 0          # a mapping that merges itself: nothing more to count
    for key_node, value_node in node.value:
        if key_node.tag == MERGE:
            subs = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for sub in subs:
                if isinstance(sub, yaml.MappingNode):
                    _flatten(loader, sub)
    own = sum(1 for key_node, _ in node.value if key_node.tag != MERGE)
    loader.flatten_mapping(node)
    loader.merged[id(node)] = len(node.value) - own
    return loader.merged[id(node)]


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode):
    data = Sequence()
    data.line = node.start_mark.line + 1
    data.item_lines = []
    yield data
    for child in node.value:
        data.append(loader.construct_object(child, deep=True))
        data.item_lines.append(child.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _expanded_size(root: yaml.Node) -> int:
    """How many values the node graph holds with every alias expanded (counted once per node)."""
    size: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [root]
    while stack:                      # post-order without recursion: the graph may share nodes
        node = stack.pop()
        if id(node) in size:
            continue
        size[id(node)] = 0
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        size[id(node)] = min(MAX_NODES + 1, 1 + sum(size[id(c)] for c in _children(node)))
    return size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def read_yaml(text: str, file: str) -> tuple[Any, list[Problem]]:
    """Parse YAML into Mapping/Sequence/scalars; syntax errors and limits come back as Problems."""
    try:
        loader = _LineLoader(text)      # checks the characters of the whole text
    except yaml.reader.ReaderError as exc:
        line = len((text[:exc.position] + "x").splitlines())
        return None, [Problem(file, line, "", f"character {exc.character:#x} is not allowed in YAML "
                                              f"(column {exc.position - text.rfind(chr(10), 0, exc.position)})")]
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node) > MAX_NODES:
            return None, [Problem(file, 1, "", f"holds more than {MAX_NODES} values once its aliases are "
                                               "expanded; not a hand-written file")]
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        # context and problem only: str(exc) would quote the file's line, which may not be ours
        what = " ".join(_cut(s, 80) for s in (exc.context, exc.problem) if s)
        return None, [Problem(file, line, "", what if isinstance(exc, _Limit) else f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 0, "", f"YAML error: {_cut(str(exc), 80)}")]
    finally:
        loader.dispose()
    return data, [Problem(file, line, "", msg) for line, msg in loader.key_problems]


def load_file(path: str | Path, what: str) -> tuple[Any, list[Problem]]:
    """Read and parse a YAML input file (InputError when it cannot be read; parse problems returned)."""
    return read_yaml(read_input(path, what, MAX_BYTES), str(path))


def load_ours(path: str | Path, what: str, keys: set[str]) -> Mapping:
    """A YAML input file of a kind whose top level has some of `keys` (a scenario file, a file of
    expectations), parsed; InputError when it cannot be read or parsed, is empty, or is of another kind."""
    raw, problems = load_file(path, what)
    if raw is None and not problems:
        problems = [Problem(str(path), 1, "", "the file is empty")]
    if problems:
        raise InputError(problems)
    if foreign := not_ours(str(path), raw, keys, what):
        raise foreign
    return raw


def not_ours(file: str, data: Any, keys: set[str], what: str) -> InputError | None:
    """An InputError when the parsed file has none of the top-level keys of its kind: it is some
    other file (a log, /etc/shadow), so its contents are not listed back as 'unknown keys'."""
    if isinstance(data, Mapping) and keys & {k for k in data if isinstance(k, str)}:
        return None
    shape = "text" if isinstance(data, str) else "a list" if isinstance(data, list) else \
        "a mapping without any of them" if isinstance(data, dict) else "no mapping"
    return InputError([Problem(file, 1, "", f"not a {what}: expected a mapping with {', '.join(sorted(keys))}; "
                                            f"found {shape}")])


# -- wording ------------------------------------------------------------------------------------------

def _cut(text: str, limit: int = EXCERPT) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def show(value: Any) -> str:
    """A value as a message may show it: its kind for containers, a short excerpt for text."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(_cut(value)) if len(value) <= EXCERPT else f"{_cut(value)!r} ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= EXCERPT else f"{text[:EXCERPT]}... ({len(text)} characters)"


_TYPES = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number",
          "number": "a number", "boolean": "true or false", "null": "nothing (null)"}


def _where(data: Any, path: list) -> tuple[int, str]:
    """The line and dotted field name of a JSON-schema path into Mapping/Sequence data."""
    line, field, node = getattr(data, "line", 1) or 1, "", data
    for step in path:
        if isinstance(node, Mapping):
            line = node.line_of(step)
            field = f"{field}.{step}" if field else str(step)
        elif isinstance(node, Sequence) and isinstance(step, int):
            line = node.line_of(step)
            field = f"{field}[{step}]"
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return line, field


def _wording(error) -> str:
    """A jsonschema error in the words of the rest of the lab (no long values echoed)."""
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return f"expected {' or '.join(_TYPES.get(n, n) for n in names)}, got {show(value)}"
    if kind == "enum":
        hint = " (YAML reads on/off/yes/no unquoted as true/false: quote it)" if isinstance(value, bool) else ""
        return f"{show(value)} is not one of: {', '.join(str(v) for v in expected)}{hint}"
    if kind == "const":
        return f"expected {expected!r}, got {show(value)}"
    if kind in ("minItems", "minProperties") and expected == 1:
        return "must not be empty"
    if kind == "pattern":
        description = error.schema.get("description", "")
        return f"{show(value)} is not allowed here" + (f": {description}" if description else "")
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{show(value)} is out of range ({kind} {expected})"
    return _cut(error.message, 120)


def schema_problems(data: Any, schema: dict, file: str) -> list[Problem]:
    """Every way `data` breaks `schema`, as problems at the lines of the keys and items concerned."""
    import jsonschema

    problems = []
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            allowed = sorted(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    line, field = _where(data, [*path, key])
                    problems.append(Problem(file, line, field, f"unknown key; allowed: {', '.join(allowed)}"))
            continue
        if error.validator == "required":      # one error per missing key; one problem names them all
            line, field = _where(data, path)
            missing = [k for k in error.validator_value if k not in error.instance]
            problem = Problem(file, line, field, f"missing required key{'s' if len(missing) > 1 else ''} "
                                                 f"{', '.join(map(repr, missing))}")
            if problem not in problems:
                problems.append(problem)
            continue
        if "propertyNames" in error.absolute_schema_path:     # the key itself is wrong: its line
            line, field = _where(data, [*path, error.instance])
            problems.append(Problem(file, line, field, f"bad name: {_wording(error)}"))
            continue
        line, field = _where(data, path)
        problems.append(Problem(file, line, field, _wording(error)))
    return sorted(problems, key=lambda p: p.line)
