"""A backlog as CSV or pasted lines: reading what people bring in, writing what they take out.

No Flask and no database here: the groups blueprint decides what is added (estimator/groups/transfer.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .changes import RuleError
from .estimates import Result, format_number
from .text import is_forbidden_character

#: The most a file (or pasted text) may hold, in bytes of UTF-8, and in issues.
MAX_BYTES, MAX_ROWS = 1024 * 1024, 500

#: Header names, case folded: where the key is (ours, then Jira's export), and where the
#: description is (a Jira summary is the short title people estimate by, so it comes first).
KEY_COLUMNS = ("key", "issue key")
DESCRIPTION_COLUMNS = ("summary", "description")

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

#: Files saved by spreadsheet programs, images and archives are not text; say what to do instead.
NOT_TEXT = _l(
    "The file is not UTF-8 text. Save the spreadsheet as “CSV UTF-8” (a Jira export already is) "
    "and upload that file."
)


@dataclass(frozen=True)
class Row:
    """One issue as it was brought in, untrimmed; `line` is where it starts (the header is line 1)."""

    line: int
    key: str
    description: str


def decode(data: bytes) -> str:
    """UTF-8 text, with or without a byte order mark; RuleError for anything that is not text."""
    if len(data) > MAX_BYTES:
        raise RuleError(_("The file is larger than 1 MiB. Split it into smaller files."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RuleError(str(NOT_TEXT)) from None
    if "\x00" in text:  # valid UTF-8, but no text file holds a NUL: an image, an archive…
        raise RuleError(str(NOT_TEXT))
    if not text.strip():
        raise RuleError(_("The file is empty."))
    return text


def read_csv(data: bytes) -> list[Row]:
    """The rows of a CSV file whose first line names the columns (see KEY_COLUMNS).

    Quoted cells may span lines; wholly blank rows are left out. RuleError when the file as a whole
    cannot be used: not UTF-8, binary, empty, over MAX_BYTES or MAX_ROWS, no key column.
    """
    text = decode(data)
    # strict: a quote left open runs to the end of the file, and is better reported than imported
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    try:
        header = next((cells for cells in reader if any(cell.strip() for cell in cells)), [])
        names = [cell.strip().casefold() for cell in header]
        key_at = _column(names, KEY_COLUMNS)
        if key_at is None:
            raise RuleError(
                _(
                    "The file has no key column: its first line must name the columns, one of them "
                    "“key” (or “Issue key”, as in a Jira export)."
                )
            )
        description_at = _column(names, DESCRIPTION_COLUMNS)
        rows = []
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append(Row(line, _cell(cells, key_at), _cell(cells, description_at)))
                _check_count(rows)
            line = reader.line_num + 1
    except csv.Error as error:  # an unclosed quote at the end, a cell over csv's field limit…
        raise RuleError(
            _("The file is not valid CSV near line %(line)d: %(error)s.", line=reader.line_num, error=error)
        ) from None
    if not rows:
        raise RuleError(_("The file has no issues below its header line."))
    return rows


def read_lines(text: str) -> list[Row]:
    """Pasted lines, one issue a line: the key, white space, the description; blank lines left out."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise RuleError(_("The text is larger than 1 MiB. Paste it in smaller parts."))
    rows = []
    for line, content in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        content = content.strip()
        if content:
            key, description = _split_line(content)
            rows.append(Row(line, key, description))
            _check_count(rows)
    if not rows:
        raise RuleError(_("Paste at least one line: an issue key, a space, and its description."))
    return rows


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


def _delimiter(text: str) -> str:
    """Comma, or the semicolon or tab of the header line when it has more of those: spreadsheet
    programs in German and other locales whose decimal mark is a comma save CSV with semicolons."""
    header = text.lstrip().partition("\n")[0]
    return max((",", ";", "\t"), key=header.count)


def _column(names: list[str], wanted: tuple[str, ...]) -> int | None:
    """The index of the first of the wanted columns that the header names, or None."""
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def _cell(cells: list[str], at: int | None) -> str:
    """The cell at this index, or "" when the row is shorter or the column is absent."""
    return unescape(cells[at]) if at is not None and at < len(cells) else ""


def _check_count(rows: list[Row]) -> None:
    """Stop reading as soon as there are too many issues."""
    if len(rows) > MAX_ROWS:
        raise RuleError(
            _(
                "At most %(max)d issues can be imported at once. Split the list into smaller parts.",
                max=MAX_ROWS,
            )
        )


def _split_line(line: str) -> tuple[str, str]:
    """The key up to the first space or tab, and the rest, stripped, as the description.

    Only white space that may stand in a text separates: a control character such as a vertical
    tab stays in the key, where the key's rules refuse it, instead of silently vanishing.
    """
    for at, character in enumerate(line):
        if character.isspace() and not is_forbidden_character(character, multiline=True):
            return line[:at], line[at + 1 :].strip()
    return line, ""
