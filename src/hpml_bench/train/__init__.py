"""One training run: the root config beside the run it configures (config.py), the composition
root (run.py), the loop (trainer.py), optimizers and schedules, fine-tuning, FLOPs."""
