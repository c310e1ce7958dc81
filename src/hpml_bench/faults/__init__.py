"""Faults a long run meets -- preemption, a lost loader worker, a lost peer rank, non-finite
values, out of memory: each module detects one and reports it (a one-line error, its exit code);
the trainer and the strategy act on the report (the trainer stops itself and saves, the strategy
changes its own micro-batch). No module here sets another object's state."""
