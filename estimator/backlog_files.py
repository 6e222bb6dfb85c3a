"""Backlog files as trackers export them, read into one shape: `Row`s of key, title, details, estimate.

One reader per format (CSV with a header, Thunderdome's headerless CSV, Jira's XML, Trello's JSON)
and `read_file`, which picks the reader from what the file holds, not from its name: people rename
files, and a browser may send any name. Pasted lines (`read_lines`) give the same rows.

No Flask app and no database here: the groups blueprint decides what is added
(estimator/groups/transfer.py, `add_rows`), and a tracker connection can hand it rows of its own.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from .backlog_csv import unescape
from .changes import RuleError
from .text import is_forbidden_character

#: The most a file may hold, in bytes; pasted text is smaller (a clipboard, not an export).
MAX_BYTES = 10 * 1024 * 1024
MAX_TEXT_BYTES = 1024 * 1024
#: The most issues one import reads: a whole group's worth (groups.rules.MAX_ISSUES).
MAX_ROWS = 1000
#: The longest tracker description kept; a longer one is cut, and the page says so.
DETAILS_MAX = 20_000
# csv refuses a cell over 128 KiB by default, and with it the whole file: a Jira description with
# a pasted log in it is longer. A cell can be as long as the file; what is kept of it is cut later.
csv.field_size_limit(MAX_BYTES)

#: Header names, case folded, in order of preference. The key: ours, Jira's, then the other
#: trackers' (GitLab `Issue ID`, Linear `Id`, Plane `Identifier`, Redmine `#`).
KEY_COLUMNS = ("key", "issue key", "issue id", "id", "identifier", "#")
#: Keys that a tracker writes as they are; the others are numbers, shown as "#12" (see `tracker_key`).
OWN_KEY_COLUMNS = ("key", "issue key")
#: The short title people estimate by (Jira's summary, GitLab's and Linear's title, Plane's name,
#: Redmine's subject); a lone `description` column is the title too, as in this app's own export.
TITLE_COLUMNS = ("summary", "title", "name", "subject")
DETAILS_COLUMNS = ("description",)
ESTIMATE_COLUMNS = (
    "final_estimate",  # this app's own export
    "estimation",  # Poinz
    "custom field (story points)",  # Jira
    "story points",
    "custom field (story point estimate)",  # Jira Cloud, team-managed projects
    "story point estimate",
    "estimate",  # Linear, Plane
    "weight",  # GitLab
    "estimated time",  # Redmine's export
    "estimated_hours",  # Redmine's import
)
KNOWN_COLUMNS = frozenset(KEY_COLUMNS + TITLE_COLUMNS + DETAILS_COLUMNS + ESTIMATE_COLUMNS)
#: Jira's XML names its story point field in a customfield element.
JIRA_ESTIMATE_FIELDS = ("story points", "story point estimate")
#: Keys made up for a file that has none, numbered in file order.
ROW_KEY = "ROW-%d"

#: Files saved by spreadsheet programs, images and archives are not text; say what to do instead.
NOT_TEXT = _l(
    "The file is not UTF-8 text. Save the spreadsheet as “CSV UTF-8” (a Jira export already is) "
    "and upload that file."
)


@dataclass(frozen=True)
class Row:
    """One issue as it was brought in, untrimmed; `line` is where it starts (the header is line 1),
    or its position among the file's items for XML and JSON."""

    line: int
    key: str
    title: str
    details: str = ""
    estimate: str = ""


@dataclass
class BacklogFile:
    """What a file holds: its rows, what it was read as, and what the page should say about it."""

    rows: list[Row]
    #: What `Row.line` counts: "line" (text formats) or "item" (XML items, Trello cards).
    unit: str = "line"
    notes: list[str] = field(default_factory=list)


def read_file(data: bytes) -> BacklogFile:
    """The rows of an uploaded backlog file, whatever tracker made it.

    XML and JSON are known by their first character; anything else is CSV. RuleError when the file
    as a whole cannot be used (too large, not text, not valid, no issues), with what to do.
    """
    if len(data) > MAX_BYTES:
        raise RuleError(_("The file is larger than 10 MiB. Split it into smaller files."))
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        return read_jira_xml(data)
    text, notes = decode(data)
    if start in (b"{", b"["):
        backlog = read_trello_json(text)
    else:
        backlog = read_csv_text(text)
    backlog.notes[:0] = notes
    return backlog


def decode(data: bytes) -> tuple[str, list[str]]:
    """UTF-8 text, with or without a byte order mark, or Windows-1252 when the bytes are not UTF-8
    but read as that cleanly (a spreadsheet's "CSV" in a Western locale); the notes say which.

    RuleError for anything that is not text: a NUL or another control character is in no text file.
    """
    notes = []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")  # strict: the five bytes cp1252 leaves undefined fail
        except UnicodeDecodeError:
            raise RuleError(str(NOT_TEXT)) from None
        notes.append(
            _(
                "The file is not UTF-8 text, so it was read as Windows-1252 (Western European). "
                "If accents look wrong, save it as “CSV UTF-8” and import it again."
            )
        )
    # valid UTF-8 holds no NUL in a text file (an image, an archive…); Windows-1252 "reads" any
    # bytes, so there any control character but line ends and tabs means it is not text
    if "\x00" in text or (notes and _CONTROL.search(text)):
        raise RuleError(str(NOT_TEXT))
    if not text.strip():
        raise RuleError(_("The file is empty."))
    return text, notes


def read_csv(data: bytes) -> list[Row]:
    """The rows of a CSV file (see `read_csv_text`), for callers that need no notes."""
    text, _notes = decode(data)
    return read_csv_text(text).rows


def read_csv_text(text: str) -> BacklogFile:
    """The rows of a CSV file whose first line names the columns, or of Thunderdome's headerless one.

    Columns are found by header, case-insensitively (KEY_COLUMNS, TITLE_COLUMNS…); a file without a
    key column gets keys numbered in file order, and one naming no column at all gives its first
    column as the titles; the notes say so. Quoted cells may span lines; blank rows are left out.
    """
    # strict: a quote left open runs to the end of the file, and is better reported than imported
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    notes: list[str] = []
    try:
        header = next((cells for cells in reader if any(cell.strip() for cell in cells)), [])
        names = [cell.strip().casefold() for cell in header]
        if _is_thunderdome(header, names):
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=",", strict=True)
            return BacklogFile(_thunderdome_rows(reader), notes=notes)
        key_at = _column(names, KEY_COLUMNS)
        title_at = _column(names, TITLE_COLUMNS)
        details_at = _column(names, DETAILS_COLUMNS)
        if title_at is None:
            title_at, details_at = details_at, None
        if title_at is None and key_at is None:
            title_at = 0
            notes.append(
                _(
                    "No column is named as a key or a title, so the first column, “%(column)s”, "
                    "was taken as the titles.",
                    column=header[0].strip() if header else "",
                )
            )
        own_keys = key_at is not None and names[key_at] in OWN_KEY_COLUMNS
        estimate_at = _column(names, ESTIMATE_COLUMNS)
        rows = []
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                key = _cell(cells, key_at)
                rows.append(
                    Row(
                        line,
                        key if own_keys else tracker_key(key),
                        _cell(cells, title_at),
                        _cell(cells, details_at),
                        _cell(cells, estimate_at),
                    )
                )
                _check_count(rows)
            line = reader.line_num + 1
    except csv.Error as error:  # an unclosed quote at the end, a cell over csv's field limit…
        raise RuleError(
            _("The file is not valid CSV near line %(line)d: %(error)s.", line=reader.line_num, error=error)
        ) from None
    if not rows:
        raise RuleError(_("The file has no issues below its header line."))
    if key_at is None:
        rows = _numbered(rows)
        notes.append(
            _("The file has no key column, so the issues were numbered ROW-1, ROW-2… in file order.")
        )
    return BacklogFile(rows, notes=notes)


def read_jira_xml(data: bytes) -> BacklogFile:
    """The issues of Jira's XML export ("Export → XML" of a search: RSS with one <item> an issue).

    Parsed by defusedxml, which refuses entity declarations (billion laughs) and external
    references; the description is HTML in Jira and becomes plain text here (`html_to_text`).
    """
    try:
        root = parse_xml(data, forbid_dtd=True)
    except DefusedXmlException:
        raise RuleError(_("The XML file declares entities or a document type, which are refused.")) from None
    except ParseError as error:
        line = error.position[0] if error.position else 0
        raise RuleError(_("The file is not valid XML near line %(line)d.", line=line)) from None
    items = root.findall("./channel/item") or root.findall(".//item")
    if not items:
        raise RuleError(_("The XML file holds no issues: a Jira XML export has one <item> element an issue."))
    rows = []
    for number, item in enumerate(items, start=1):
        key = _text(item, "key")
        title = _text(item, "summary") or re.sub(r"^\s*\[[^\]]*\]\s*", "", _text(item, "title"))
        rows.append(
            Row(number, key, title.strip(), html_to_text(_text(item, "description")), _jira_estimate(item))
        )
        _check_count(rows)
    return BacklogFile(rows, unit="item")


def read_trello_json(text: str) -> BacklogFile:
    """The cards of a Trello board's JSON export (board menu → Print, export and share → JSON).

    The key is the card's number on its board (`idShort`, shown as "#12"), else its short link;
    archived cards, and cards of archived lists, are left out and counted.
    """
    try:
        board = json.loads(text)
    except (ValueError, RecursionError):
        raise RuleError(_("The file is not valid JSON.")) from None
    cards = board.get("cards") if isinstance(board, dict) else None
    if not isinstance(cards, list):
        raise RuleError(_("The JSON file is not a Trello board export: it has no “cards”."))
    lists = board.get("lists")
    closed_lists = {
        entry.get("id")
        for entry in (lists if isinstance(lists, list) else [])
        if isinstance(entry, dict) and entry.get("closed") is True
    }
    rows, archived = [], 0
    for number, card in enumerate(cards, start=1):
        if not isinstance(card, dict):
            continue
        if card.get("closed") is True or card.get("idList") in closed_lists:
            archived += 1
            continue
        short = card.get("idShort")
        numbered = isinstance(short, int) and not isinstance(short, bool)
        key = f"#{short}" if numbered else _string(card, "shortLink")
        rows.append(Row(number, key, _string(card, "name"), _string(card, "desc")))
        _check_count(rows)
    notes = []
    if archived:
        notes.append(
            ngettext("%(num)d archived card was left out.", "%(num)d archived cards were left out.", archived)
        )
    if not rows:
        raise RuleError(_("The board has no cards to import."))
    return BacklogFile(rows, unit="item", notes=notes)


def read_lines(text: str) -> list[Row]:
    """Pasted lines, one issue a line: the key, white space, the title; blank lines left out."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise RuleError(_("The text is larger than 1 MiB. Paste it in smaller parts."))
    rows = []
    for line, content in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        content = content.strip()
        if content:
            key, title = _split_line(content)
            rows.append(Row(line, key, title))
            _check_count(rows)
    if not rows:
        raise RuleError(_("Paste at least one line: an issue key, a space, and its description."))
    return rows


def tracker_key(cell: str) -> str:
    """A tracker's issue number as a key people recognise: GitLab's and Redmine's 12 is "#12";
    a key with letters in it (Linear's ENG-12, Plane's TEST-1) stays as it is."""
    number = cell.strip()
    return f"#{number}" if number.isascii() and number.isdigit() else cell


def clean_details(text: str) -> tuple[str, bool]:
    """A tracker's long description as it is kept: plain line ends, characters that hide or reorder
    text shown as �, cut at DETAILS_MAX; True when it was cut."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    hidden = {c for c in set(text) if is_forbidden_character(c, multiline=True)}  # each once: fast
    if hidden:
        text = "".join("\ufffd" if c in hidden else c for c in text)
    if len(text) <= DETAILS_MAX:
        return text, False
    return text[: DETAILS_MAX - 1] + "…", True


class _PlainText(HTMLParser):
    """Collects the text of an HTML fragment: blocks and <br> become line breaks, list items get a
    bullet, scripts and styles are dropped. Nothing of the markup survives, so nothing can run."""

    #: Elements that stand apart from what is around them, and those that only start a new line.
    BLOCKS = frozenset("p div h1 h2 h3 h4 h5 h6 pre blockquote ul ol table hr section article".split())
    LINES = frozenset("br li tr dt dd".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skipping += 1
        elif tag == "pre":
            self.preformatted += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag in self.LINES:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("• ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skipping = max(0, self.skipping - 1)
        elif tag == "pre":
            self.preformatted = max(0, self.preformatted - 1)
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data if self.preformatted else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """The plain text of an HTML fragment (Jira's XML descriptions), with its line breaks."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    lines = [line.strip(" ") for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


#: Control characters no text file holds (tab, line feed, carriage return and form feed are text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _delimiter(text: str) -> str:
    """Comma, or the semicolon or tab of the header line when it has more of those: spreadsheet
    programs in German and other locales whose decimal mark is a comma save CSV with semicolons."""
    header = re.split(r"[\r\n]", text.lstrip(), maxsplit=1)[0]
    return max((",", ";", "\t"), key=header.count)


def _is_thunderdome(header: list[str], names: list[str]) -> bool:
    """Thunderdome's CSV has no header: six columns Type, Title, ReferenceId, Link, Description,
    AcceptanceCriteria; its first line is an issue, names no known column and links to a page."""
    return (
        len(header) == 6
        and not KNOWN_COLUMNS.intersection(names)
        and (not header[3].strip() or header[3].strip().lower().startswith(("http://", "https://")))
    )


def _thunderdome_rows(reader: Iterator[list[str]]) -> list[Row]:
    """Thunderdome's issues: the reference as the key, the acceptance criteria below the description."""
    rows: list[Row] = []
    line = 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            type_, title, reference, _link, description, criteria = [*cells, "", "", "", "", ""][:6]
            details = description.strip()
            if criteria.strip():
                details += "\n\n" + _("Acceptance criteria:") + "\n" + criteria.strip()
            rows.append(Row(line, tracker_key(reference), title, details.strip()))
            _check_count(rows)
        line = reader.line_num + 1  # type: ignore[attr-defined]  # a csv reader has it
    return rows


def _numbered(rows: list[Row]) -> list[Row]:
    """The rows with keys made up in file order, for a file that has no key column."""
    return [
        Row(row.line, ROW_KEY % number, row.title, row.details, row.estimate)
        for number, row in enumerate(rows, start=1)
    ]


def _column(names: list[str], wanted: tuple[str, ...]) -> int | None:
    """The index of the first of the wanted columns that the header names, or None."""
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


def _cell(cells: list[str], at: int | None) -> str:
    """The cell at this index, or "" when the row is shorter or the column is absent."""
    return unescape(cells[at]) if at is not None and at < len(cells) else ""


def _text(element: Element, path: str) -> str:
    """The text of a child element, or ""."""
    return element.findtext(path) or ""


def _string(entry: dict[str, object], name: str) -> str:
    """A JSON object's string member, or "" when it is absent or not a string."""
    value = entry.get(name)
    return value if isinstance(value, str) else ""


def _jira_estimate(item: Element) -> str:
    """The story points of a Jira XML item: the value of its customfield named so, or ""."""
    for custom in item.iterfind("./customfields/customfield"):
        if _text(custom, "customfieldname").strip().casefold() in JIRA_ESTIMATE_FIELDS:
            return _text(custom, "customfieldvalues/customfieldvalue").strip()
    return ""


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
    """The key up to the first space or tab, and the rest, stripped, as the title.

    Only white space that may stand in a text separates: a control character such as a vertical
    tab stays in the key, where the key's rules refuse it, instead of silently vanishing.
    """
    for at, character in enumerate(line):
        if character.isspace() and not is_forbidden_character(character, multiline=True):
            return line[:at], line[at + 1 :].strip()
    return line, ""
