"""hpml export run=<run folder> format=torchscript|exported|aoti|onnx|int8 [checkpoint=best|last|ema] [key=value ...]

Writes one checked artifact of a trained run into <run>/export/<format>[-<checkpoint>]/ with its
meta.json: written into a temp folder, checked against the eager model (int8: scored on the
validation set next to fp32), and only then renamed into place; a refused export leaves nothing."""
from __future__ import annotations

from hpml_bench.cli.args import keys_help, parse_args, set_threads, wants_help
from hpml_bench.deploy.export import ExportConfig, export_run
from hpml_bench.deploy.formats import FORMATS
from hpml_bench.deploy.validate import RunData
from hpml_bench.train.trained_run import load_trained


def export_command(args: list[str]) -> int:
    """The `hpml export` command; prints the artifact's path."""
    if wants_help(args):
        print(keys_help(ExportConfig, __doc__))
        return 0
    cfg = parse_args(args, ExportConfig, "export")
    set_threads(cfg.threads)
    fmt = FORMATS.get(cfg.format)()
    trained = load_trained(cfg.run, cfg.checkpoint)
    data = RunData(trained, cfg.parity_images, cfg.calibration_batches, cfg.eval_batches)
    print(export_run(trained, fmt, data, cfg))
    return 0
