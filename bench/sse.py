"""Server-sent events read as a browser's EventSource reads them (the HTML standard's parsing rules),
from the chunks a connection hands over, whatever their boundaries."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One dispatched event: its type, data and the stream's last event id when it came."""

    event: str
    data: str
    id: str


class EventReader:
    """Feed it the stream's bytes as they arrive; it returns the events they complete.

    Lines end with LF, CR or CRLF; a blank line dispatches the event; `:` starts a comment; a
    field's value loses one leading space; `data` lines are joined with LF; `id` is kept for the
    events after it (the Last-Event-ID of a reconnect) unless it holds a NUL; an event with no
    data is not dispatched; `retry` and unknown fields are ignored (as EventSource keeps `retry`
    to itself).
    """

    def __init__(self) -> None:
        self.last_id = ""
        self._pending = b""  # the start of a line not yet ended
        self._event = ""
        self._data: list[str] = []
        self._cr = False  # the last chunk ended with CR: an LF first in the next one ends nothing

    def feed(self, chunk: bytes) -> list[Message]:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        text = self._pending + chunk
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._pending = text.split(b"\n")
        found = []
        for raw in lines:
            message = self._line(raw.decode("utf-8", "replace"))
            if message is not None:
                found.append(message)
        return found

    def _line(self, line: str) -> Message | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        return None

    def _dispatch(self) -> Message | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return Message(event, "\n".join(data), self.last_id)
