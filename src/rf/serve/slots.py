"""One generator per device: who streams, who waits, and in which order.

    request(v)   free slot -> v streams now (on_start); else a place in the bounded queue (on_position), or
                 "refused" when `queue_size` visitors already wait
    leave(v)     the visitor closed the page: its slot or its place is freed at once, the next one starts
    finished(v)  v's stream ended (stop, max_seconds, idle): the next in the queue starts

Everyone waiting hears their position (1 = next) at every change. The slot is handed over at once; the next
stream's worker runs behind the previous one's last chunk (rf.serve.app: one worker thread per device), so
the model never runs two streams at a time. Plain Python, no I/O: called from the event loop only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Slots(Generic[V]):
    def __init__(self, queue_size: int, on_start: Callable[[V], None], on_position: Callable[[V, int], None]):
        if queue_size < 0:
            raise ValueError(f"queue_size={queue_size} must be >= 0 (0: no one waits, a busy server refuses)")
        self.queue_size, self.on_start, self.on_position = queue_size, on_start, on_position
        self.running: V | None = None
        self.waiting: deque[V] = deque()

    def request(self, visitor: V) -> str:
        """-> "started", "queued" or "refused"."""
        if visitor is self.running or visitor in self.waiting:
            raise ValueError("this visitor already streams or waits: stop first")
        if self.running is None and not self.waiting:
            self.running = visitor
            self.on_start(visitor)
            return "started"
        if len(self.waiting) >= self.queue_size:
            return "refused"
        self.waiting.append(visitor)
        self.on_position(visitor, len(self.waiting))
        return "queued"

    def position(self, visitor: V) -> int | None:
        """1 = next; None when not waiting."""
        return self.waiting.index(visitor) + 1 if visitor in self.waiting else None

    def leave(self, visitor: V) -> None:
        if visitor is self.running:
            self.finished(visitor)
        elif visitor in self.waiting:
            at = self.waiting.index(visitor)
            self.waiting.remove(visitor)
            self._tell_positions(start=at)

    def finished(self, visitor: V) -> None:
        if visitor is not self.running:
            return
        self.running = None
        if self.waiting:
            self.running = self.waiting.popleft()
            self.on_start(self.running)
            self._tell_positions(start=0)

    def _tell_positions(self, start: int) -> None:
        for k, v in enumerate(self.waiting):
            if k >= start:
                self.on_position(v, k + 1)
