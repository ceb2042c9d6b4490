"""One source row as the readers yield it, and the normalised text that decides what counts as one question.

Lower than the agents: the source readers and the seeded subset yield `RawRow`s before any agent sees
them, and the splits, benchmarks and data tests all compare questions by `normalise_text`.
"""

from __future__ import annotations


def normalise_text(text: str) -> str:
    """Lower-cased, whitespace-collapsed text: the key that must never appear in two splits.

    `str.split()` splits on exactly the characters regex `\\s` matches, so this equals collapsing `\\s+`
    to one space and stripping, at a quarter of the cost (it runs once per record).
    """
    return " ".join(str(text).split()).lower()


class RawRow:
    """One source row: its 1-based line (or row) number and the parsed record, or why it could not be parsed.

    Rows read from JSONL keep their exact bytes (`raw`) and are parsed only when `record` or `error` is
    first asked for, so copying a source into the store never pays for a JSON round trip.
    """

    __slots__ = ("line", "raw", "_record", "_error", "_parsed")

    def __init__(self, line: int, record: dict | None = None, error: str | None = None, raw: bytes | None = None):
        self.line, self.raw = line, raw
        self._record, self._error = record, error
        self._parsed = raw is None or record is not None or error is not None

    def _parse(self) -> None:
        import orjson

        self._parsed = True
        try:
            value = orjson.loads(self.raw)
        except orjson.JSONDecodeError as e:
            self._error = f"line {self.line}: not valid JSON ({e})"
            return
        if isinstance(value, dict):
            self._record = value
        else:
            self._error = f"line {self.line}: expected a JSON object, got {type(value).__name__}"

    @property
    def record(self) -> dict | None:
        if not self._parsed:
            self._parse()
        return self._record

    @property
    def error(self) -> str | None:
        if not self._parsed:
            self._parse()
        return self._error

    def renumbered(self, line: int) -> RawRow:
        """The same row at another line number (rows of several files numbered as one source)."""
        if self.raw is not None and not self._parsed:
            return RawRow(line, raw=self.raw)
        return RawRow(line, self._record, self._error, self.raw)

    def __eq__(self, other) -> bool:
        if not isinstance(other, RawRow):
            return NotImplemented
        return (self.line, self.record, self.error) == (other.line, other.record, other.error)

    __hash__ = None  # mutable cache inside; rows are compared, never hashed

    def __repr__(self) -> str:
        return f"RawRow(line={self.line}, record={self.record!r}, error={self.error!r})"
