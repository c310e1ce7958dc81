"""`python -m hpml_bench ...` (what torchrun starts) is the `hpml` command."""
import sys

from hpml_bench.cli.main import main

sys.exit(main())
