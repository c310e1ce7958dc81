"""Deployment: export it to a checked artifact (export),
run artifacts on image files the way training preprocessed them (predict)."""
from hpml_bench.train.trained_run import TrainedRun, load_trained, preprocess_spec

__all__ = ["TrainedRun", "load_trained", "preprocess_spec"]
