"""When hpml was imported: the fallback clock of summary.json's startup_s where /proc is
missing (callbacks/startup.py). Its own module so that reading it imports nothing else."""
from __future__ import annotations

import time

IMPORTED_AT = time.perf_counter()
