"""What a nickname may be, and when two nicknames are one: case, width and look-alikes.

A nickname is shaped by the PRECIS nickname profile of RFC 8266 (precis-i18n): white space
trimmed and collapsed, NFKC.  It compares by its *key* (the same profile with case folded:
"Alice" and "ALICE" are one person) and is told apart from other people's by its *skeleton*
(estimator.text.looks: "Аlice" with a Cyrillic А, "A1ice", "AIice" and "ᴀlice" all look like "Alice").
"""

from __future__ import annotations

import unicodedata

from confusable_homoglyphs import categories  # type: ignore[import-untyped]  # the package ships no type information
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from precis_i18n import get_profile

from ..changes import RuleError
from ..text import has_forbidden_characters, looks

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
    """The form look-alike nicknames share, ignoring case too ("Alice", "Аlice", "AIice", "ᴀlice")."""
    return looks(shown)
