"""How a view applies a change the domain rules may refuse."""

from collections.abc import Callable

from flask import flash

from .extensions import db


class RuleError(Exception):
    """A change the rules refuse in the current state; the message is for the person who asked."""


def commit_or_explain(change: Callable[[], str]) -> bool:
    """Run a change that returns its success message: commit and say so, or say why it was refused."""
    try:
        message = change()
    except RuleError as error:
        db.session.rollback()
        flash(str(error), "warning")
        return False
    db.session.commit()
    flash(message, "success")
    return True
