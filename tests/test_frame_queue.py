"""The frame queue between capture and inference: drop-oldest for live sources, refill-at-half for
replays, whole batches per take, close wakes the takers."""

from __future__ import annotations

import threading
import time

import pytest

from edge.frame_queue import FrameQueue


def test_live_source_drops_the_oldest_and_says_so():
    q: FrameQueue[int] = FrameQueue(3)
    assert [q.put_drop_oldest(i) for i in range(5)] == [False, False, False, True, True]
    assert q.take(10, 0) == [2, 3, 4]  # the newest three survive, in order


def test_take_returns_at_most_a_batch_in_order():
    q: FrameQueue[int] = FrameQueue(10)
    for i in range(7):
        assert q.put_wait(i, 0)
    assert q.take(4, 0) == [0, 1, 2, 3]
    assert q.take(4, 0) == [4, 5, 6]
    t0 = time.monotonic()
    assert q.take(4, 0.05) == [] and time.monotonic() - t0 >= 0.04  # waited for its timeout


def test_a_waiting_replay_resumes_only_once_the_queue_is_half_empty():
    q: FrameQueue[int] = FrameQueue(8)
    for i in range(8):
        assert q.put_wait(i, 0)
    assert not q.put_wait(99, 0.02)  # full: times out, nothing added
    resumed = threading.Event()

    def producer() -> None:
        q.put_wait(8, 5.0)
        resumed.set()

    t = threading.Thread(target=producer)
    t.start()
    q.take(3, 0)                     # 5 left: above half, the producer keeps sleeping
    assert not resumed.wait(0.1)
    q.take(1, 0)                     # 4 left = half: it wakes and adds its frame
    assert resumed.wait(2.0)
    t.join(2.0)
    assert q.take(10, 0) == [4, 5, 6, 7, 8]


def test_close_wakes_a_waiting_taker_at_once():
    q: FrameQueue[int] = FrameQueue(4)
    got: list[list[int]] = []
    t = threading.Thread(target=lambda: got.append(q.take(4, 10.0)))
    t.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    q.close()
    t.join(2.0)
    assert got == [[]] and time.monotonic() - t0 < 1.0 and q.closed


def test_clear_counts_what_was_left_and_frees_a_waiting_producer():
    q: FrameQueue[int] = FrameQueue(2)
    q.put_wait(1, 0)
    q.put_wait(2, 0)
    assert q.clear() == 2 and q.qsize() == 0
    assert q.put_wait(3, 0)


def test_zero_size_is_refused():
    with pytest.raises(ValueError):
        FrameQueue(0)


def test_fill_wait_gathers_a_fuller_batch_but_never_waits_past_its_bound():
    q: FrameQueue[int] = FrameQueue(32)
    q.put_drop_oldest(0)

    def feed() -> None:
        for i in range(1, 8):
            time.sleep(0.01)
            q.put_drop_oldest(i)

    t = threading.Thread(target=feed)
    t.start()
    batch = q.take(8, 1.0, fill_wait_s=10.0)  # returns as soon as the batch is full, not after 10 s
    t.join()
    assert batch == list(range(8))
    q.put_drop_oldest(8)
    start = time.monotonic()
    assert q.take(8, 1.0, fill_wait_s=0.05) == [8]  # nothing more came: the bound ends the wait
    assert time.monotonic() - start >= 0.04
    q.put_drop_oldest(9)
    assert q.take(8, 1.0) == [9]  # default: no waiting for a fuller batch (CPU)
