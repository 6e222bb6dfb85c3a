"""Forms shared by every blueprint."""

from flask_wtf import FlaskForm
from wtforms import SubmitField


class EmptyForm(FlaskForm):
    """Only a CSRF token and a button: for actions such as logout, reveal or re-vote."""

    submit = SubmitField("Submit")
