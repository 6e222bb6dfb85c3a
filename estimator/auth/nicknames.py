"""What a nickname may be, and when two nicknames are one: case, width and look-alikes.

A nickname is shaped by the PRECIS nickname profile of RFC 8266 (precis-i18n): white space
trimmed and collapsed, NFKC.  It compares by its *key* (the same profile with case folded:
"Alice" and "ALICE" are one person) and is told apart from other people's by its *skeleton*
(Unicode TR39: "Аlice" with a Cyrillic А, "A1ice" and "AIice" all look like "Alice").
"""

from __future__ import annotations

import unicodedata
from functools import cache

from confusable_homoglyphs import (  # type: ignore[import-untyped]  # the package ships no type information
    categories,
    confusables,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from precis_i18n import get_profile

from ..changes import RuleError
from ..text import has_forbidden_characters

NICKNAME_MAX = 32
NICKNAME_PUNCTUATION = " ._-"

_SHAPE = get_profile("NicknameCasePreserved")
_FOLD = get_profile("NicknameCaseMapped:CaseFold")

# Scripts that letters of any script may sit beside (Scripts.txt values as confusable-homoglyphs
# names them), and TR39's augmented script sets (section 5.1): Han is written together with
# Hiragana and Katakana in Japanese, with Hangul in Korean and with Bopomofo in Chinese.
_ANY_SCRIPT = frozenset({"COMMON", "INHERITED"})
_WRITING_SYSTEMS = {
    "HAN": frozenset({"HAN", "JPAN", "KORE", "HANB"}),
    "HIRAGANA": frozenset({"JPAN"}),
    "KATAKANA": frozenset({"JPAN"}),
    "HANGUL": frozenset({"KORE"}),
    "BOPOMOFO": frozenset({"HANB"}),
}

INVISIBLE = _l("A nickname cannot contain control characters or invisible characters.")
ONLY_LETTERS = _l("Use letters, digits, spaces and . _ - only.")
MIXED_SCRIPTS = _l("A nickname uses the letters of one script only, not Latin mixed with Cyrillic or Greek.")
TOO_SIMILAR = _l("“%(nickname)s” is too similar to an existing nickname. Please choose another one.")


class NicknameError(RuleError):
    """A nickname that breaks the rules; the message says which rule."""


def clean_nickname(raw: str | None) -> str:
    """The nickname as it will be shown, or NicknameError saying what is wrong with it."""
    text = raw or ""
    if has_forbidden_characters(text):
        raise NicknameError(str(INVISIBLE))
    try:
        shown = _SHAPE.enforce(text)
    except UnicodeError as error:
        reason = getattr(error, "reason", "")
        if reason.endswith("/empty"):
            raise NicknameError(_("Please choose a nickname.")) from None
        if reason.endswith(("/controls", "/precis_ignorable_properties", "/unassigned")):
            raise NicknameError(str(INVISIBLE)) from None
        raise NicknameError(str(ONLY_LETTERS)) from None  # symbols, or Hangul jamo not forming syllables
    if len(shown) > NICKNAME_MAX:
        raise NicknameError(_("A nickname has at most %(max)d characters.", max=NICKNAME_MAX))
    previous = " "
    for character in shown:
        kind = unicodedata.category(character)
        if kind.startswith("M") and not unicodedata.category(previous).startswith(("L", "M")):
            raise NicknameError(_("An accent or other mark must follow a letter."))
        if not (kind.startswith(("L", "M")) or kind == "Nd" or character in NICKNAME_PUNCTUATION):
            raise NicknameError(str(ONLY_LETTERS))
        previous = character
    return shown


def is_single_script(text: str) -> bool:
    """Whether the letters and marks of text belong to one writing system (digits go with any)."""
    systems: set[str] | None = None
    for character in text:
        if not unicodedata.category(character).startswith(("L", "M")):
            continue
        script = categories.alias(character)
        if script in _ANY_SCRIPT:
            continue
        these = _WRITING_SYSTEMS.get(script, frozenset({script}))
        systems = set(these) if systems is None else systems & these
        if not systems:
            return False
    return True


def nickname_key(shown: str) -> str:
    """The form two spellings of one nickname share ("Alice", "ALICE", "ａｌｉｃｅ")."""
    return _FOLD.enforce(shown)


def nickname_skeleton(shown: str) -> str:
    """The form look-alike nicknames share, ignoring case too ("Alice", "Аlice", "AIice", "A1ice").

    TR39's skeleton keeps case, so it runs before case folding, where a capital still looks like
    its twin (Greek Η is Latin H, while their small letters η and h differ), and again after it.
    """
    return skeleton(skeleton(shown).casefold())


def skeleton(text: str) -> str:
    """The Unicode TR39 skeleton: each character replaced by the prototype it is confusable with."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


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
