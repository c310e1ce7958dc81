"""The documentation cannot drift: the generated reference equals a fresh generation, every
config key has a description, the site builds with `mkdocs build --strict`, and every command
the README names runs (tiny settings), or at least its --help / --cfg job does."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from hpml_bench.cli import docs_reference
from hpml_bench.config.fielddoc import describe, own_comments

ROOT = Path(__file__).resolve().parents[1]


def test_reference_pages_are_current(monkeypatch):
    monkeypatch.chdir(ROOT)
    for name, text in docs_reference.pages().items():
        path = ROOT / "docs" / "reference" / name
        assert path.exists() and path.read_text() == text, (
            f"docs/reference/{name} is stale: run python -m hpml_bench.cli.docs_reference")


def test_every_config_key_has_a_description():
    assert docs_reference.missing_descriptions() == [], "add a comment beside (or above) each of these fields"


def test_descriptions_come_from_the_field_comments():
    from hpml_bench.data.shapes import ShapesConfig
    from hpml_bench.train.trainer_config import TrainerConfig

    # a comment at the end of the line, comment lines above, and a base class's comment
    assert describe(TrainerConfig, "precision").startswith("fp32 | bf16 | fp16")
    assert describe(TrainerConfig, "warmup_epochs") == "Leading epochs marked warm-up and left out of summary means and speedups."
    assert "batch" in describe(ShapesConfig, "batch_size") and "batch_size" not in own_comments(ShapesConfig)


def test_train_help_shows_the_descriptions(hpml):
    out = hpml("train", "--help").out
    assert "  precision: fp32  # fp32 | bf16 | fp16" in out
    assert "  num_workers: 0  # DataLoader worker processes" in out


def test_version(hpml):
    assert re.fullmatch(r"hpml \S+\n", hpml("--version").out)
    out = hpml("version").out
    assert "torch " in out and "extra [export]:" in out and "extra [docs]:" in out


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the docs extra is not installed: pip install -e '.[docs]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                                       **_env()})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()


def _env() -> dict:
    import os

    return dict(os.environ)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


# ---- every command in the README runs ----------------------------------------------------

def readme_commands() -> list[str]:
    """Each command line of the README's bash code blocks (comments dropped, `&&` split)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.extend(part.strip() for part in line.split("&&"))
    return commands


def readme_error_examples() -> list[tuple[str, str]]:
    """($ command, the error line printed under it) of the README's text blocks."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^\$ (hpml .+)\n(error: .+)$", text, flags=re.M)


def _hpml_args(command: str) -> list[str] | None:
    words = shlex.split(command)
    if words and words[0] in ("hpml", ".venv/bin/hpml"):
        return words[1:]
    return None


def test_readme_names_commands():
    commands = readme_commands()
    assert any(c.startswith("bash scripts/test.sh") for c in commands)
    assert sum(_hpml_args(c) is not None for c in commands) >= 6


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, hpml, tmp_path):
    args = _hpml_args(command)
    words = shlex.split(command)
    if args is None:
        # scripts and tools: the file named must exist (they run in CI: .ci/run, test_deploy_cpp)
        paths = [w for w in words if "/" in w and not w.startswith(("runs/", "http"))]
        for path in paths:
            assert (ROOT / path.split("/build/")[0]).exists() or (ROOT / path).exists(), path
        return
    placeholder = any("<" in a for a in args)
    command_name = args[0] if args else ""
    if command_name == "train":
        if args == ["train"]:  # the default run itself, at tiny size
            result = hpml("train", *TINY)
        else:  # compose and check only: GPUs, several processes, data on disk are not here
            result = hpml(*[a for a in args if a != "-m"], *(["--cfg", "job"]))
            if "-m" in args:  # a sweep's values compose one by one
                sweep = [a for a in args if "," in a and "=" in a]
                for a in sweep:
                    key, values = a.split("=", 1)
                    for value in values.split(","):
                        one = [x if x != a else f"{key}={value}" for x in args if x != "-m"]
                        assert hpml(*one, "--cfg", "job").rc == 0
                return
    elif command_name == "slurm":  # render only, never submit from a test
        result = hpml(*[a.replace("slurm.submit=true", "slurm.submit=false") for a in args],
                      f"slurm.out_dir={tmp_path}")
    elif placeholder or command_name in ("bench",):  # needs a run folder, or takes minutes
        try:
            result = hpml(command_name, "--help")
        except SystemExit as exc:  # some commands' --help exits like argparse's
            assert exc.code in (0, None)
            return
    else:
        result = hpml(*args)
    assert result.rc == 0, result.out + result.err


@pytest.mark.parametrize("command,error", readme_error_examples())
def test_readme_error_examples_are_what_hpml_prints(command, error, hpml):
    result = hpml(*shlex.split(command)[1:])
    assert result.rc == 2
    printed = (result.out + result.err).strip().splitlines()[-1]
    shown = error.removesuffix("...").rstrip(", .")
    assert printed.startswith(shown), (printed, shown)
