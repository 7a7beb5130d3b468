"""One backoff for every retry of the pipeline (sink writes, worker restarts)."""

from __future__ import annotations

import random


def backoff(attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): exponential, capped, with
    jitter in [delay/2, delay] so workers that failed together do not retry together."""
    delay = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return delay / 2 + random.random() * delay / 2
