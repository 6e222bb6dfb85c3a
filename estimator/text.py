"""Rules for free text typed by people: trimmed, bounded, without control characters."""

from wtforms.validators import ValidationError

ALLOWED_CONTROL = "\n\r\t"


def has_control_characters(text: str, allowed: str = "") -> bool:
    """True when text holds a control character other than the allowed ones."""
    return any((ord(ch) < 32 or 127 <= ord(ch) < 160) and ch not in allowed for ch in text)


class CleanText:
    """WTForms validator and filter: trims the text, bounds its length, refuses control characters."""

    def __init__(self, minimum: int, maximum: int, *, multiline: bool = False, what: str = "This field"):
        self.minimum, self.maximum, self.multiline, self.what = minimum, maximum, multiline, what

    def __call__(self, _form, field) -> None:
        text = (field.data or "").strip()
        field.data = text
        if has_control_characters(text, ALLOWED_CONTROL if self.multiline else ""):
            raise ValidationError(f"{self.what} cannot contain control characters.")
        if len(text) < self.minimum:
            raise ValidationError(f"{self.what} cannot be empty.")
        if len(text) > self.maximum:
            raise ValidationError(f"{self.what} has at most {self.maximum} characters.")
