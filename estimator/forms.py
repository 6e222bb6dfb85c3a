"""Forms shared by every blueprint."""

from flask_wtf import FlaskForm


class EmptyForm(FlaskForm):
    """Only a CSRF token: for button-only actions such as logout, reveal or re-vote."""
