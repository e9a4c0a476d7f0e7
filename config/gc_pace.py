"""How often the cyclic garbage collector walks the whole heap in wesfarm's processes.

Python's default thresholds, (700, 10, 10), run a full collection after every ten
middle-generation ones once the survivors have grown by a quarter. A producer decoding a
block's Results and an executor answering a request keep thousands of young objects
alive at once, so the default walks each process's whole heap (the engine, its modules,
every Result so far) again and again; docs/HOT_PATH.md has what that cost. Reference
counting frees nearly everything wesfarm allocates; the collector is only for cycles,
which a full collection every FULL_AFTER middle-generation ones still reclaims.
"""

from __future__ import annotations

import gc

FULL_AFTER = 100
THRESHOLDS = (700, 10, FULL_AFTER)


def pace_collector() -> None:
    """Set this process's collector thresholds (the CLI and every executor call it)."""
    gc.set_threshold(*THRESHOLDS)
