"""Rules for text typed by people: trimmed, bounded, without control or invisible characters.

One rule decides which characters nobody may type into a name, a key, a description, a nickname
or a `next` address; every validator asks `is_forbidden_character`.
"""

import unicodedata

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
