"""One line per finished query shard with the rate and the time left, e.g.

mine: shard 12/100 (5000 queries) in 41.3 s; 12/100 done, 14.2 q/s, ETA 1h00m
"""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class ShardProgress:
    """Counts the shards of this run (resumed ones excluded) and prints each shard's line to stderr."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.stream = total, enabled, stream or sys.stderr
        self.done = self.queries = 0
        self.started = self.last = time.perf_counter()

    def step(self, shard_index: int, num_queries: int) -> str:
        now = time.perf_counter()
        self.done += 1
        self.queries += num_queries
        elapsed = now - self.started
        eta = elapsed / self.done * (self.total - self.done)
        line = (
            f"mine: shard {shard_index} ({num_queries} queries) in {now - self.last:.1f} s; "
            f"{self.done}/{self.total} done, {self.queries / max(elapsed, 1e-9):.1f} q/s, ETA {_duration(eta)}"
        )
        self.last = now
        if self.enabled:
            print(line, file=self.stream, flush=True)
        return line
