"""A progress bar per epoch (rich), on the main rank and only on a terminal."""
from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from hpml_bench.callbacks.base import Callback


class ProgressBar(Callback):
    def on_fit_start(self, trainer) -> None:
        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=True)
        self.progress.start()

    def on_train_epoch_start(self, trainer) -> None:
        self.task = self.progress.add_task("train", total=trainer.steps_per_epoch, epoch=trainer.epoch + 1, loss=float("nan"))

    def on_step_end(self, trainer, out) -> None:
        self.progress.advance(self.task)
        if self.progress.tasks[-1].completed % 10 == 1:  # .item() waits for the GPU: not every step
            self.progress.update(self.task, loss=out.loss.item())

    def on_train_epoch_end(self, trainer, record: dict) -> None:
        self.progress.remove_task(self.task)

    def on_fit_end(self, trainer) -> None:
        self.progress.stop()
