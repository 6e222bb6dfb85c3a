"""Template filters."""

from markupsafe import Markup, escape

#: Room for any card once escaped (8 characters, each at most a 6-byte entity or 4 UTF-8 bytes).
CARD_PADDING_BYTES = 64


def card_padding(card: str) -> Markup:
    """An HTML comment that brings a shown card to one size, so a page's size never tells the card."""
    used = len(str(escape(card)).encode())
    return Markup("<!--" + " " * max(0, CARD_PADDING_BYTES - used) + "-->")
