"""The step ⇄ worker frame protocol, and the step federation's buffering of tagged messages."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fedcore import codec
from task_engine import frames
from task_engine.channel import FrameLogHandler, StepChannel, StepFederation


def test_frames_round_trip_with_arrays_and_big_integers() -> None:
    frame = {"kind": "send", "dst": "20000", "tag": "g", "value": [np.arange(5.0), 2**300]}
    data = frames.encode(frame)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    out = frames.decode(data[4:])
    assert out["tag"] == "g" and out["value"][1] == 2**300
    np.testing.assert_array_equal(out["value"][0], np.arange(5.0))


def test_encoded_ciphertexts_go_out_as_they_are_and_come_in_undecoded() -> None:
    """A step sends an encoded array without copying it and receives one as a view (the
    ciphertexts of a SecureBoost tree pass through a Spark driver once, as bytes)."""
    cts = [2**2000 + k for k in range(3000)]
    piece = codec.encode_items(cts)
    value = {"gh": {"ciphertexts": codec.EncodedArray(len(cts), [piece]), "exponent": 0}}
    pieces = frames.encode_pieces({"kind": "fed", "src": "10000", "tag": "gh", "value": value})
    assert any(p is piece for p in pieces)
    a, b = socket.socketpair()
    with a, b:
        threading.Thread(target=lambda: [a.sendall(p) for p in pieces], daemon=True).start()
        got = frames.recv_frame(b, int_arrays=True)["value"]["gh"]["ciphertexts"]
    assert isinstance(got, codec.IntArray) and got.ints() == cts


@pytest.mark.parametrize(
    "frame",
    [
        ["send"],
        {"kind": "exec", "code": "rm -rf /"},
        {"kind": "send", "dst": "20000", "tag": "g"},  # no value
        {"kind": "metric", "name": "loss"},
    ],
)
def test_malformed_frames_are_refused(frame: object) -> None:
    with pytest.raises(frames.FrameError):
        frames.validate(frame)


def test_garbage_and_oversized_lengths_are_refused() -> None:
    with pytest.raises(frames.FrameError):
        frames.decode(b"\xc1")
    a, b = socket.socketpair()
    with a, b:
        a.sendall((frames.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        with pytest.raises(frames.FrameError, match="exceeds"):
            frames.recv_frame(b)


def test_blocking_socket_reads_split_frames_and_reports_a_clean_close() -> None:
    a, b = socket.socketpair()
    data = frames.encode({"kind": "log", "level": "INFO", "line": "x" * 100_000})

    def trickle() -> None:
        for i in range(0, 21, 7):  # the header and the start of the payload in small pieces
            a.sendall(data[i : i + 7])
            time.sleep(0.01)
        a.sendall(data[21:])
        a.close()

    with b:
        writer = threading.Thread(target=trickle)
        writer.start()
        assert frames.recv_frame(b)["line"] == "x" * 100_000
        writer.join()
        with pytest.raises(frames.ChannelClosed):
            frames.recv_frame(b)


async def test_asyncio_stream_reads_frames_and_detects_a_truncated_one() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(frames.encode({"kind": "done", "outputs": {"data": "/x"}}))
    partial = frames.encode({"kind": "failed", "reason": "boom"})
    reader.feed_data(partial[:-2])
    reader.feed_eof()
    assert (await frames.read_frame(reader))["outputs"] == {"data": "/x"}
    with pytest.raises(frames.FrameError, match="inside a frame"):
        await frames.read_frame(reader)
    empty = asyncio.StreamReader()
    empty.feed_eof()
    with pytest.raises(frames.ChannelClosed):
        await frames.read_frame(empty)


@pytest.fixture
def channel_pair() -> Iterator[tuple[StepChannel, socket.socket]]:
    step_side, worker_side = socket.socketpair()
    channel = StepChannel(step_side, exit_if_worker_gone=False)
    yield channel, worker_side
    worker_side.close()
    channel.close()


def _fed(src: str, tag: str, value: object) -> dict[str, object]:
    return {"kind": "fed", "src": src, "tag": tag, "value": value}


def test_recv_buffers_other_tags_and_parties_until_asked(
    channel_pair: tuple[StepChannel, socket.socket],
) -> None:
    channel, worker = channel_pair
    fed = StepFederation(channel)
    for frame in (
        _fed("20000", "b", 1),
        _fed("30000", "a", 2),
        _fed("20000", "a", 3),
        _fed("20000", "a", 4),
    ):
        frames.send_frame(worker, frame)
    assert fed.recv("20000", "a") == 3  # the earlier "b" and the other party's "a" wait
    assert fed.recv("20000", "a") == 4  # same tag twice: first in, first out
    assert fed.recv("30000", "a") == 2
    assert fed.recv("20000", "b") == 1
    assert channel.pending() == {}


def test_recv_blocks_until_the_message_arrives(
    channel_pair: tuple[StepChannel, socket.socket],
) -> None:
    channel, worker = channel_pair
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(channel.recv("20000", "late")))
    waiter.start()
    time.sleep(0.2)
    assert got == [] and waiter.is_alive()
    frames.send_frame(worker, _fed("20000", "late", {"ok": True}))
    waiter.join(timeout=5)
    assert got == [{"ok": True}]
    with pytest.raises(TimeoutError):
        channel.recv("20000", "never", timeout_s=0.1)


def test_recv_fails_instead_of_hanging_when_the_worker_goes_away(
    channel_pair: tuple[StepChannel, socket.socket],
) -> None:
    channel, worker = channel_pair
    worker.close()
    with pytest.raises(frames.ChannelClosed):
        channel.recv("20000", "x", timeout_s=5)


def test_sends_metrics_and_log_records_become_frames(
    channel_pair: tuple[StepChannel, socket.socket],
) -> None:
    channel, worker = channel_pair
    StepFederation(channel).send("20000", "grad", np.ones(3))
    channel.metric("loss", 0.5, step=2)
    logger = logging.getLogger("test_task_frames.component")
    handler = FrameLogHandler(channel)
    logger.addHandler(handler)
    try:
        logger.warning("half way")
    finally:
        logger.removeHandler(handler)
    channel.done({"model": "/out/model"})
    got = [frames.recv_frame(worker) for _ in range(4)]
    assert [f["kind"] for f in got] == ["send", "metric", "log", "done"]
    assert got[0]["dst"] == "20000" and got[0]["tag"] == "grad"
    assert got[1] == {"kind": "metric", "name": "loss", "value": 0.5, "step": 2}
    assert got[2]["level"] == "WARNING" and got[2]["line"] == "half way"
    assert got[3]["outputs"] == {"model": "/out/model"}
