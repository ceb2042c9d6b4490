"""YAML loading that remembers line numbers, so every schema.yml error can name its file and line."""

from __future__ import annotations

from pathlib import Path

import yaml


class LineDict(dict):
    """A mapping from YAML, with the line of the mapping and of each key (1-based)."""

    def __init__(self, *args, line: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.line, self.key_lines = line, {}

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from YAML, with the line of the sequence and of each item (1-based)."""

    def __init__(self, items=(), line: int = 0):
        super().__init__(items)
        self.line, self.item_lines = line, [line] * len(self)


class _Loader(yaml.SafeLoader):
    """SafeLoader (no arbitrary tags) that builds LineDict/LineList and refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict(line=node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.key_lines[key]})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList((loader.construct_object(child, deep=True) for child in node.value), line=node.start_mark.line + 1)
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_with_lines(path: Path):
    """Parse `path`; a YAML syntax error is re-raised as ValueError naming the file and line."""
    try:
        return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ValueError(f"{path}:{line}: invalid YAML: {e.problem or e.context}") from None
