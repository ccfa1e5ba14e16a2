"""How late the event loop wakes a sleeper: the one loop-lag probe (a shard logs it, the operator
and the demo report it).

`sample_loop_lag(period_s, report)` sleeps `period_s` again and again and hands `report` how
much later than asked each sleep ended. A late Lease renewal or a slow write usually shows here
first: something held the loop (a long synchronous step, a full garbage collection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NoReturn


async def sample_loop_lag(period_s: float, report: Callable[[float], None]) -> NoReturn:
    """Forever (until cancelled): sleep `period_s`, then `report(seconds late)`."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(period_s)
        report(time.monotonic() - t0 - period_s)
