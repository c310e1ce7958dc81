"""Tasks: what the model's outputs mean — loss, metrics, and the logits to score."""
from hpml_bench.tasks import classification, segmentation  # noqa: F401  (registers)
from hpml_bench.tasks.base import TASKS, Task, build_task

__all__ = ["TASKS", "Task", "build_task"]
