"""The one error a domain rule raises when it refuses a change.

Views apply a refusable change in one way everywhere::

    try:
        rule(...)
    except RuleError as error:
        db.session.rollback()
        ...  # flash the reason, or show it on the form (422)
    else:
        db.session.commit()
        ...  # flash the success, redirect
"""


def N_(message: str) -> str:
    """Mark a message for translation where it is shown; the rules themselves know no language."""
    return message


class RuleError(Exception):
    """A change the rules refuse in the current state; the message is for the person who asked."""
