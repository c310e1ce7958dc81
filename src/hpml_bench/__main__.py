"""`python -m hpml_bench ...` (what torchrun starts) is the `hpml` command."""
from hpml_bench.cli.main import run

run()
