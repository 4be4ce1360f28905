"""Deadlines for a request's headers and body, which uvicorn does not keep.

uvicorn's ``timeout_keep_alive`` closes a connection that stays silent after a response,
but nothing bounds a connection that has sent nothing yet, nor one that sends a byte of its
headers now and then (slowloris), nor one that announces a body and sends only part of it:
each holds a socket and its buffers for as long as the client likes, and enough of them
leave the server without file descriptors. ``DeadlineProtocol`` is the HTTP/1.1 protocol
uvicorn picks itself (``http="auto"``: httptools when installed, else h11) with two
deadlines, kept by one ``loop.call_later`` handle per connection (no thread; per chunk of
data, a few attribute reads; per request, a timer armed and cancelled, about a microsecond):

* **headers**: ``header_timeout`` seconds from the connection or from the end of the
  previous response for the next request's headers to be complete, however they trickle
  in. Then the connection is closed, after a 408 if part of a request had arrived. (On an
  idle keep-alive connection this closes it after ``min(header_timeout,
  timeout_keep_alive)`` seconds.)
* **body**: ``body_timeout`` seconds from the end of the headers for the whole body. Then the
  connection is closed, and the handler waiting for the body sees the client disconnect.

Pass it to uvicorn with ``http=deadline_protocol(...)``: a ``functools.partial`` of the class,
which pickles, so that ``--workers N`` processes get it too.

uvicorn internals relied on (the same in ``httptools_impl`` and ``h11_impl`` of uvicorn
0.54): ``uvicorn.protocols.http.auto.AutoHTTPProtocol``, the class subclassed; the keyword
arguments uvicorn constructs it with; the attributes ``transport``, ``loop``, ``client``,
``server_state.default_headers`` and ``cycle`` (the latest request's ``RequestResponseCycle``,
replaced when a request's headers are complete, ``None`` before the first), and the cycle's
``more_body`` (false once the whole body has arrived) and ``response_complete``; and the
method ``on_response_complete``, which the cycle calls after each response.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the class uvicorn's "auto" picks; its interface is the same in both
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _AutoHTTPProtocol
else:
    from uvicorn.protocols.http.auto import AutoHTTPProtocol as _AutoHTTPProtocol

log = logging.getLogger("hybridrec.server")

#: Seconds for a request's headers to be complete, from the connection or the last response.
HEADER_TIMEOUT = 10.0
#: Seconds for a request's body to be complete, from the end of its headers.
BODY_TIMEOUT = 30.0


class DeadlineProtocol(_AutoHTTPProtocol):
    """uvicorn's HTTP/1.1 protocol, closing connections whose request headers or body are
    late (see the module's docstring)."""

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT,
                 body_timeout: float = BODY_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        #: The deadline armed, if any, and whether it is the body's.
        self._deadline: asyncio.TimerHandle | None = None
        self._for_body = False
        #: Whether any byte arrived since the headers' deadline was armed (then it is a 408).
        self._heard = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(self.header_timeout, for_body=False)

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        self._heard = True
        super().data_received(data)
        cycle = self.cycle
        if cycle is not before:  # a request's headers are complete
            if cycle.more_body and not cycle.response_complete:
                self._arm(self.body_timeout, for_body=True)
            else:
                self._disarm()
        elif self._for_body and not cycle.more_body:  # its body is complete
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if self.transport.is_closing():
            self._disarm()
        elif cycle.response_complete:  # nothing in flight: the next request's headers are due
            self._heard = False
            self._arm(self.header_timeout, for_body=False)
        elif cycle.more_body:  # a pipelined request has started, its body not all in
            self._arm(self.body_timeout, for_body=True)
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._disarm()

    def _arm(self, seconds: float, for_body: bool) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)
        self._for_body = for_body

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._for_body = False

    def _expired(self) -> None:
        """Close the connection whose deadline passed (unless it is closing already or was
        handed to the WebSocket protocol)."""
        self._deadline = None
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return
        part = "body" if self._for_body else "headers"
        seconds = self.body_timeout if self._for_body else self.header_timeout
        log.debug("closing the connection from %s: request %s not complete in %g s",
                  self.client, part, seconds)
        if not self._for_body and self._heard:
            transport.write(self._timeout_response(f"request headers not complete in "
                                                   f"{seconds:g} s\n"))
        transport.close()

    def _timeout_response(self, text: str) -> bytes:
        """A 408 with ``text`` and ``connection: close``."""
        body = text.encode()
        head = [b"HTTP/1.1 408 Request Timeout\r\n"]
        head += [name + b": " + value + b"\r\n"
                 for name, value in self.server_state.default_headers]
        head += [b"content-type: text/plain; charset=utf-8\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]
        return b"".join(head) + body


def deadline_protocol(header_timeout: float = HEADER_TIMEOUT,
                      body_timeout: float = BODY_TIMEOUT) -> Any:
    """``DeadlineProtocol`` with these deadlines, for uvicorn's ``http`` option."""
    if header_timeout <= 0 or body_timeout <= 0:
        raise ValueError("the header and body timeouts must be positive")
    return functools.partial(DeadlineProtocol, header_timeout=header_timeout,
                             body_timeout=body_timeout)
