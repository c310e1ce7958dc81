"""The run folder: `RunFolder` names every file of `runs/<id>/`; writes, lock, checksums, provenance."""
from hpml_bench.runfolder.layout import CHECKPOINTS, RANK_COLUMNS, SPLIT_COLUMNS, RunFolder

__all__ = ["CHECKPOINTS", "RANK_COLUMNS", "SPLIT_COLUMNS", "RunFolder"]
