"""Rules for text typed by people: trimmed, bounded, without control or invisible characters.

One rule decides which characters nobody may type into a name, a key, a description, a nickname
or a `next` address; every validator asks `is_forbidden_character`. One rule decides when two texts
look alike (`looks`): nicknames and issue keys are told apart by it.
"""

import re
import unicodedata
from functools import cache

from confusable_homoglyphs import confusables  # type: ignore[import-untyped]  # the package ships no type information
from flask_babel import gettext as _
from precis_i18n.unicode import UnicodeData
from wtforms import Field
from wtforms.validators import ValidationError

#: Line breaks and tabs, allowed only in text that may span several lines.
MULTILINE_CONTROLS = "\n\r\t"

#: Control (Cc), format (Cf: bidi controls, zero-width joiners…), surrogates, private use,
#: unassigned code points, and the line and paragraph separators that are not `\n`.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

# Unicode's Default_Ignorable_Code_Point property, as precis-i18n ships it: invisible characters
# such as U+3164 HANGUL FILLER or U+034F COMBINING GRAPHEME JOINER that are letters or marks by
# category and so slip past a check on categories alone.
_UNICODE = UnicodeData()


def is_forbidden_character(character: str, *, multiline: bool = False) -> bool:
    """True for a character that hides, reorders or fakes text: control, format, invisible…"""
    if multiline and character in MULTILINE_CONTROLS:
        return False
    return unicodedata.category(character) in FORBIDDEN_CATEGORIES or _UNICODE.default_ignorable(
        ord(character)
    )


def has_forbidden_characters(text: str, *, multiline: bool = False) -> bool:
    """True when text holds a character that `is_forbidden_character` refuses."""
    return any(is_forbidden_character(character, multiline=multiline) for character in text)


def has_lone_marks(text: str) -> bool:
    """True when an accent or other combining mark stands on its own, with no character to sit on.

    Such a mark lands on whatever the page shows before the text, or on a dotted circle.
    """
    previous = " "
    for character in text:
        if unicodedata.category(character).startswith("M") and previous.isspace():
            return True
        previous = character
    return False


class CleanText:
    """WTForms validator and filter: trims the text, bounds its length, refuses forbidden characters."""

    def __init__(self, minimum: int, maximum: int, *, multiline: bool = False, what: object = "This field"):
        # `what` names the text as the subject of a sentence ("A group name"), translated lazily.
        self.minimum, self.maximum, self.multiline, self.what = minimum, maximum, multiline, what

    def __call__(self, _form: object, field: Field) -> None:
        """Trim field.data in place, then check it."""
        text = (field.data or "").strip()
        field.data = text
        what = str(self.what)
        if has_forbidden_characters(text, multiline=self.multiline):
            raise ValidationError(
                _("%(what)s cannot contain control characters or invisible characters.", what=what)
            )
        if has_lone_marks(text):
            raise ValidationError(_("%(what)s cannot contain an accent or other mark on its own.", what=what))
        if len(text) < self.minimum:
            raise ValidationError(_("%(what)s cannot be empty.", what=what))
        if len(text) > self.maximum:
            raise ValidationError(_("%(what)s has at most %(max)d characters.", what=what, max=self.maximum))


#: Letter pairs that pass for one letter and that TR39's character-by-character table leaves
#: alone ("VVill" beside "Will"); its own sequences ("rn" for "m", "cl" for "d") it maps itself.
_LOOK_ALIKE_SEQUENCES = (("vv", "w"),)
#: Where Unicode keeps its small capitals: IPA and phonetic extensions, Latin Extended-D and -E,
#: Latin Extended-F and -G.
_SMALL_CAPITAL_BLOCKS = ((0x0250, 0x02B0), (0x1D00, 0x1DC0), (0xA720, 0xA800), (0xAB30, 0xAB70),
                         (0x10780, 0x107C0), (0x1DF00, 0x1E000))  # fmt: skip
_SMALL_CAPITAL = re.compile(
    r"(LATIN|GREEK|CYRILLIC) (?:CAPITAL )?(?:LETTER SMALL CAPITAL|SMALL CAPITAL LETTER) (.+)"
)


def looks(text: str) -> str:
    """What text looks like, whatever its case: two texts that give the same are look-alikes.

    Unicode TR39's skeleton ("Аlice" with a Cyrillic А, "A1ice" and "AIice" all look like
    "Alice"), after small capitals are read as the capitals they are drawn as ("ᴀlice", "ᴘia"),
    and with "vv" read as "w". The skeleton keeps case, so it runs before case folding, where a
    capital still looks like its twin (Greek Η is Latin H, while their small letters η and h
    differ), and again after it.
    """
    capitals = _small_capitals()
    plain = skeleton(skeleton("".join(capitals.get(c, c) for c in text)).casefold())
    for sequence, letter in _LOOK_ALIKE_SEQUENCES:
        plain = plain.replace(sequence, letter)
    return plain


def skeleton(text: str) -> str:
    """The Unicode TR39 skeleton: each character replaced by the prototype it is confusable with."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


@cache
def _small_capitals() -> dict[str, str]:
    """Each small capital letter (ᴀ, ʙ, ᴘ, ɪ…) and the capital it is drawn as (A, B, P, I…).

    Unicode gives them no decomposition and TR39 no prototype, so they are found by name; those
    with no capital of the same name (ɶ, ʁ) look like no other letter and stay as they are.
    """
    capitals = {}
    for code in (code for start, end in _SMALL_CAPITAL_BLOCKS for code in range(start, end)):
        match = _SMALL_CAPITAL.fullmatch(unicodedata.name(chr(code), ""))
        if match:
            script, letter = match.groups()
            try:
                capitals[chr(code)] = unicodedata.lookup(f"{script} CAPITAL LETTER {letter}")
            except KeyError:
                continue
    return capitals


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character's prototype, from Unicode's confusables.txt.

    confusable-homoglyphs ships that file as a symmetric table: every source character lists
    its prototype, and every prototype lists its sources.  A source is one code point mapped to
    exactly one prototype, while prototypes stand for themselves; so an entry whose one partner
    has several partners (or is a sequence) is a source.  The rare isolated pair of single code
    points is mapped to its smaller member: the pair stays one class, as in TR39.
    """
    table = {
        _unmarked(text): [_unmarked(partner["c"]) for partner in partners]
        for text, partners in confusables.confusables_data.items()
    }
    prototypes = {}
    for text, partners in table.items():
        if len(text) != 1 or len(partners) != 1:
            continue  # a prototype
        partner = partners[0]
        if len(partner) > 1 or len(table.get(partner, ())) > 1:
            prototypes[text] = partner
        else:
            prototypes[text] = min(text, partner)
    return prototypes


def _unmarked(text: str) -> str:
    """The text without the direction marks the data wraps right-to-left characters in."""
    return text.replace("\u200e", "").replace("\u200f", "")
