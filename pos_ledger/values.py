"""Value rules shared by every way in (HTTP models, the ingest decoder, signatures): written once.

* Identifiers (store, terminal, member, payment, shift, campaign, conflict ids, SKUs,
  key ids) are 1-64 of `[A-Za-z0-9_.:-]` and not dots only (`.` and `..` name
  directories in every path, log line and export file an id ends up in).
* Input JSON nests at most `JSON_DEPTH_MAX` arrays/objects deep.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

IDENTIFIER_CHARACTERS: Final = r"[A-Za-z0-9_.:-]"
IDENTIFIER_LENGTH_MAX: Final = 64
#: Leading dots, then one character that is not a dot, then any allowed: never dots only. No
#: look-ahead (pydantic's Rust regex engine has none) and no backtracking blow-up.
IDENTIFIER_PATTERN: Final = r"^\.*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$"
#: An identifier as a msgspec type (the ingest decoder, event data).
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=IDENTIFIER_LENGTH_MAX,
                                         pattern=IDENTIFIER_PATTERN)]
_IDENTIFIER: Final = re.compile(IDENTIFIER_PATTERN)

#: Arrays and objects one JSON document may nest; deeper is refused before it is decoded.
JSON_DEPTH_MAX: Final = 32
#: A JSON string (escapes followed), so brackets inside strings do not count.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_BRACKET: Final = re.compile(rb"[\[\]{}]")


def is_identifier(text: str) -> bool:
    return len(text) <= IDENTIFIER_LENGTH_MAX and _IDENTIFIER.match(text) is not None


def json_depth(raw: bytes) -> int:
    """How deep the JSON text nests arrays and objects, found without decoding it.

    Linear and iterative (regular expressions, no recursion), so a document that would
    exhaust a recursive decoder's stack is measured safely. Text that is not JSON gets
    some number; its decoder refuses it afterwards.
    """
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_too_deep(raw: bytes, depth_max: int = JSON_DEPTH_MAX) -> bool:
    """Whether the JSON text nests deeper than `depth_max` (a cheap count first: few brackets, no scan)."""
    if raw.count(b"[") + raw.count(b"{") <= depth_max:
        return False
    return json_depth(raw) > depth_max
