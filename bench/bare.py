"""The baseline: a minimal Flask app answering "ok", served exactly as Estimator is (bench/ratios.py)."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def ok() -> str:
    """The least a Flask view can do."""
    return "ok"
