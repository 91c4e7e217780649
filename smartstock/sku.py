"""What a valid SKU is, in one place: it is stored, shown, written to CSV and used as an MQTT topic level.

1 to 64 characters; no control characters; none of `/ + #` (a topic level must not split or match other
topics); not starting with whitespace. Config keys, CSV rows, MQTT sales records and `sku set` all use this rule.
"""

from __future__ import annotations

import re

MAX_SKU_CHARS = 64
SKU_RULE = f"1 to {MAX_SKU_CHARS} characters without / + # or control characters, not starting with a space"
_SKU = re.compile(r"^[^/+#\s\x00-\x1f\x7f][^/+#\x00-\x1f\x7f]{0,%d}$" % (MAX_SKU_CHARS - 1))


def sku_problem(sku: object) -> str | None:
    """Why `sku` is not a valid SKU, or None when it is."""
    if not isinstance(sku, str):
        return f"SKU must be text, got {type(sku).__name__}"
    if not _SKU.match(sku):
        return f"SKU {sku[:80]!r} is not valid: {SKU_RULE}"
    return None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell for a CSV export that a spreadsheet will not run as a formula (CSV injection):
    text starting with = + - @ tab or CR gets a leading `'`. Numbers are written as they are."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value
