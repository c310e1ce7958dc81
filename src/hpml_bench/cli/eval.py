"""hpml eval run=<run folder> [checkpoint=best|last|ema] [split=val|test] [format=eager|<exported format>] [tta=none|flip|multicrop] [dataset.<key>=...]

Scores the run's model on a split of its own data set (or, with dataset.root=..., of
another folder of the same layout) through the run's own preprocessing: accuracy and
per-class precision/recall/F1 for classification; mIoU, per-class IoU and Dice for
segmentation; a confusion matrix for both. `format=int8` (or any format `hpml export` wrote)
scores that artifact the same way; `tta=flip` or `tta=multicrop` averages the model's
predictions over augmented views. Results: <run>/eval/<split>[-<format>][-<checkpoint>][-tta_<form>][-<folder>].json,
.md and _confusion.png.
"""
from __future__ import annotations

from hpml_bench.cli.args import keys_help, parse_args, set_threads, wants_help
from hpml_bench.eval.evaluate import EvalConfig, evaluate


def eval_command(args: list[str]) -> int:
    """The `hpml eval` command: prints the headline and the files written."""
    if wants_help(args):
        print(keys_help(EvalConfig, __doc__))
        return 0
    dataset_overrides = [a for a in args if a.startswith("dataset.")]  # the data set to score, not eval keys
    cfg = parse_args([a for a in args if a not in dataset_overrides], EvalConfig, "eval")
    set_threads(cfg.threads)
    result, written = evaluate(cfg, dataset_overrides)
    print(result["line"])
    for path in written:
        print(path)
    return 0
