"""The step process's end of the worker socket: a fedalgo ``Federation``, metrics and log shipping.

A reader thread takes ``fed`` frames off the socket and files them by ``(src, tag)``; ``recv``
blocks until the message it asks for has arrived, so messages that arrive early or out of order
wait in the buffer. Writes from any thread are serialised by one lock.

If the worker goes away (the socket closes before the step has reported its outcome) nobody is
left to relay the step's messages or report its result, so the step process exits at once with
:data:`EXIT_WORKER_GONE` rather than living on as an orphan.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import defaultdict, deque
from typing import Any, Final

from task_engine import frames

EXIT_WORKER_GONE: Final = 70

_log = logging.getLogger(__name__)


class StepChannel:
    """A connected step socket: frames out under a lock, ``fed`` frames in via a reader thread."""

    def __init__(self, sock: socket.socket, *, exit_if_worker_gone: bool = True) -> None:
        self._sock = sock
        self._exit_if_worker_gone = exit_if_worker_gone
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._inbox: dict[tuple[str, str], deque[Any]] = defaultdict(deque)
        self._closed: BaseException | None = None
        self._finished = False
        self._reader = threading.Thread(target=self._read_loop, name="step-channel", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: str, **kwargs: bool) -> StepChannel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock, **kwargs)

    # -- outbound --------------------------------------------------------------------------

    def write(self, frame: frames.Frame) -> None:
        pieces = frames.encode_pieces(frame)  # an encoded array goes out as it is, not copied
        with self._write_lock:
            for piece in pieces:
                self._sock.sendall(piece)

    def send(self, dst: str, tag: str, value: Any) -> None:
        self.write({"kind": frames.SEND, "dst": str(dst), "tag": tag, "value": value})

    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        self.write({"kind": frames.METRIC, "name": name, "value": value, "step": step})

    def log(self, level: str, line: str) -> None:
        self.write({"kind": frames.LOG, "level": level, "line": line})

    def done(self, outputs: dict[str, str]) -> None:
        self._finished = True
        self.write({"kind": frames.DONE, "outputs": outputs})

    def failed(self, reason: str, code: str) -> None:
        """The step failed: ``reason`` stays on this party, ``code`` may be told to peers."""
        self._finished = True
        self.write({"kind": frames.FAILED, "reason": reason, "code": code})

    # -- inbound ---------------------------------------------------------------------------

    def recv(self, src: str, tag: str, timeout_s: float | None = None) -> Any:
        """The next value tagged ``tag`` from party ``src``; blocks until it arrives."""
        key = (str(src), tag)
        with self._cond:
            ready = self._cond.wait_for(
                lambda: bool(self._inbox.get(key)) or self._closed is not None, timeout_s
            )
            if not ready:
                raise TimeoutError(f"no {tag!r} from party {src} within {timeout_s} s")
            if self._inbox.get(key):
                queue = self._inbox[key]
                value = queue.popleft()
                if not queue:
                    del self._inbox[key]
                return value
            raise frames.ChannelClosed(
                f"worker channel closed while waiting for {tag!r} from {src}"
            )

    def pending(self) -> dict[tuple[str, str], int]:
        """How many buffered messages wait under each ``(src, tag)`` (for tests and debugging)."""
        with self._cond:
            return {key: len(q) for key, q in self._inbox.items()}

    def deliver(self, frame: frames.Frame) -> None:
        """File one inbound frame (the reader thread calls this; tests may too)."""
        if frame["kind"] != frames.FED:
            raise frames.FrameError(f"a step does not accept {frame['kind']!r} frames")
        with self._cond:
            self._inbox[(str(frame["src"]), frame["tag"])].append(frame["value"])
            self._cond.notify_all()

    def _read_loop(self) -> None:
        try:
            while True:
                # Long arrays of big ints stay encoded (Context.recv decodes them unless the
                # component hands them to its engine as they are).
                self.deliver(frames.recv_frame(self._sock, int_arrays=True))
        except (OSError, frames.FrameError) as exc:  # ChannelClosed is an OSError
            with self._cond:
                self._closed = exc
                self._cond.notify_all()
            if self._exit_if_worker_gone and not self._finished:
                # Nobody is left to relay or report for this step: don't outlive the worker.
                os._exit(EXIT_WORKER_GONE)

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self._sock.close()
        self._reader.join(timeout=5)


class StepFederation:
    """fedalgo's ``Federation`` for a step process: traffic goes through the worker socket."""

    def __init__(self, channel: StepChannel) -> None:
        self._channel = channel

    def send(self, dst_party: str, tag: str, value: Any) -> None:
        self._channel.send(dst_party, tag, value)

    def recv(self, src_party: str, tag: str) -> Any:
        return self._channel.recv(src_party, tag)


class FrameLogHandler(logging.Handler):
    """Ships the component's log records to the worker as ``log`` frames."""

    def __init__(self, channel: StepChannel, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._channel.log(record.levelname, self.format(record))
        except (OSError, frames.FrameError):
            self.handleError(record)
