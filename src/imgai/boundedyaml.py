"""YAML with bounds: config files and overrides are read by a loader that refuses what no config
needs and an attacker (or a typo) can use to hang or crash the reader.

PyYAML's safe loader runs no code, but it still builds whatever the document describes: aliases
that expand a hundred bytes into a billion values ("billion laughs"), nesting deep enough for a
RecursionError, integers too long for Python's int parser. This loader checks the composed node
graph before anything is constructed:

- at most :data:`MAX_DEPTH` levels of nesting (counted while composing, so no deep recursion);
- at most :data:`MAX_NODES` values once aliases are expanded (aliases themselves are fine, e.g.
  ``<<: *defaults``), and no alias that contains itself;
- scalars of at most :data:`MAX_SCALAR` characters, integers of at most :data:`MAX_INT_DIGITS`
  digits, documents of at most :data:`MAX_BYTES` bytes.

A violation raises :class:`YamlLimitError` whose message is one short line (it never quotes the
offending value). Messages quoting a value use :func:`imgai.text.short_repr`.
"""

from __future__ import annotations

import yaml

MAX_BYTES = 1 << 20  # a config is a few KB
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_SCALAR = 10_000  # longer than any path (PATH_MAX is 4096)
MAX_INT_DIGITS = 40  # 2**128 has 39 digits; no setting needs more

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class YamlLimitError(ValueError):
    """The document breaks one of the bounds; ``line`` is 1-based when known."""

    def __init__(self, problem: str, mark=None):
        self.problem = problem
        self.line = mark.line + 1 if mark is not None else None
        where = f" at line {self.line}" if self.line is not None else ""
        super().__init__(f"{problem}{where}")


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nests deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_graph(root: yaml.Node) -> None:
    """Count values with aliases expanded (memoised, so linear in the distinct nodes), and check
    each scalar once. Iterative: the graph may be deep, but never deeper than MAX_DEPTH."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            _check_scalar(node)
            sizes[key] = 1
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if children_done:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_NODES:
                raise YamlLimitError(
                    f"expands to more than {MAX_NODES:,} values (aliases repeating aliases)", node.start_mark
                )
            sizes[key] = total
            continue
        if key in open_nodes:
            raise YamlLimitError("has an alias that contains itself", node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise YamlLimitError("has an alias that contains itself", child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))


def _check_scalar(node: yaml.ScalarNode) -> None:
    value = node.value
    if len(value) > MAX_SCALAR:
        raise YamlLimitError(
            f"holds a value of {len(value):,} characters (at most {MAX_SCALAR:,})", node.start_mark
        )
    if node.tag == _INT_TAG:
        digits = sum(ch.isalnum() for ch in value)
        if digits > MAX_INT_DIGITS:
            raise YamlLimitError(
                f"holds an integer of {digits:,} digits (at most {MAX_INT_DIGITS})", node.start_mark
            )
    elif node.tag == _FLOAT_TAG and len(value) > MAX_INT_DIGITS * 2:
        raise YamlLimitError(f"holds a number of {len(value):,} characters", node.start_mark)


def load(text: str | bytes):
    """Parse one YAML document within the bounds; raises yaml.YAMLError or YamlLimitError."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"is {len(text):,} bytes long (at most {MAX_BYTES:,})")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
