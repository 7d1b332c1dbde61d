"""Holding a coalescing client's real sends until chunks have gathered, so that what a test merges
does not depend on timing (the real server still answers every call)."""

from __future__ import annotations

import threading
import time

from lstmserve.client import Client


def held(client: Client, chunks: int) -> threading.Event:
    """The coalescer's sends wait until each of `chunks` callers (the lead call aside) waits in a queue
    or sends alone, so whether they are merged does not depend on timing; then all go to the real
    server. Returns an event set when the lead call is being sent."""
    coalescer, send = client.coalescer, client.coalescer._send
    first, released, lock = threading.Event(), threading.Event(), threading.Lock()
    sending = [0]

    def send_when_gathered(request):
        with lock:
            sending[0] += 1
        first.set()
        deadline = time.monotonic() + 10
        while not released.is_set():
            waiting = sum(len(queue.waiting) for queue in list(coalescer._queues.values()))
            if waiting + sending[0] - 1 >= chunks:
                released.set()
            assert time.monotonic() < deadline, "the chunks never gathered"
            time.sleep(0.001)
        return send(request)

    coalescer._send = send_when_gathered
    return first
