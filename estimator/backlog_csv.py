"""A backlog as CSV: the export people take out, and the escaping that lets it come back in.

Reading files of every tracker is in estimator/backlog_files.py. No Flask app and no database here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from .estimates import Result, format_number
from .text import is_forbidden_character

EXPORT_HEADER = (
    "key",
    "description",
    "state",
    "final_estimate",
    "rounds",
    "votes",
    "average",
    "median",
    "low",
    "high",
)

#: A cell starting with one of these is a formula to a spreadsheet program; tab and carriage
#: return too (OWASP's list), though trimmed keys and descriptions never start with them.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

BOM = "\ufeff"


def unescape(cell: str) -> str:
    """The cell without the quote that `escape` put before a formula sign (exports come back in)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


def escape(cell: str) -> str:
    """The cell with a quote before a leading formula sign, so spreadsheet programs show it as text."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def printable(text: str, limit: int = 40) -> str:
    """Text from a refused row as a page may show it: hidden characters made visible as �, cut short."""
    shown = "".join("\ufffd" if is_forbidden_character(c) else c for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def number_cell(value: float | str | None) -> str:
    """A result's number with up to two decimals, a card label as it is, nothing for no value."""
    if value is None:
        return ""
    return value if isinstance(value, str) else format_number(value)


def export_row(
    key: str, description: str, state: str, final: str | None, rounds: int, result: Result | None
) -> list[str]:
    """One issue's line of the export (`result` is its last revealed round's, if any)."""
    numbers = ["", "", "", "", ""]
    if result is not None:
        numbers = [
            str(result.votes),
            number_cell(result.average),
            number_cell(result.median),
            number_cell(result.low),
            number_cell(result.high),
        ]
    return [key, description, state, final or "", str(rounds), *numbers]


def write_csv(rows: Iterable[list[str]]) -> str:
    """The export: a byte order mark (so spreadsheet programs read accents), the header, the rows,
    every cell escaped against formulas."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out)  # RFC 4180: quoted where needed, CRLF line ends
    writer.writerow(EXPORT_HEADER)
    writer.writerows([escape(cell) for cell in row] for row in rows)
    return out.getvalue()
