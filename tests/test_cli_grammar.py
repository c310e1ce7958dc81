"""One argument grammar for every command (Hydra's override grammar, plus: a value Hydra's lexer
cannot read means its own text): the same words name the same folder in train, prepare, slurm,
bench, report, export, predict, eval and cam, through the real CLI."""
import contextlib
import os
import shlex
from pathlib import Path

import pytest
from conftest import TINY
from deploy_helpers import write_shape_pngs

from hpml_bench.cli.main import main
from hpml_bench.config.words import hydra_words, parse_word, value_of

RUN = [*TINY, "model=resnet18", "trainer.epochs=1", "dataset.num_train=32", "dataset.num_val=16"]


def spellings(text: str) -> list[str]:
    return ["'" + text + "'", '"' + text + '"', text.replace(" ", "\\ "), text]


@pytest.fixture(scope="module")
def spaced(tmp_path_factory):
    """A finished run in `runs/my run` and a PNG in `my photos/`, under one working folder."""
    root = tmp_path_factory.mktemp("grammar")
    with contextlib.chdir(root):  # the run folder is relative to the working folder
        assert main(["train", *RUN, "run_dir='runs/my run'"]) == 0
    write_shape_pngs(root / "my photos", [16])
    return root


def in_folder(root: Path, capsys, *args: str):
    old = os.getcwd()
    os.chdir(root)
    try:
        capsys.readouterr()
        rc = main(list(args))
        return rc, capsys.readouterr()
    finally:
        os.chdir(old)


@pytest.mark.parametrize("word", ["images='a b'", 'images="a b"', "images=a\\ b", "images=a b", "k=[1,2]", "k=null",
                                  "k=3", "k=01", "k=true", "k='it\\'s'", "k=C:\\x\\y", "k=a\\,b", "+k=1", "k=${x}"])
def test_a_word_hydra_reads_means_what_hydra_says(word):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = OverridesParser.create().parse_override(word)
    assert value_of([word], "k" if word.lstrip("+").startswith("k") else "images") == hydra.value()
    assert hydra_words([word]) == [word]  # handed to Hydra unchanged


@pytest.mark.parametrize("word, value", [("dataset.root=~/data", "~/data"), ("images=données", "données"),
                                         ("images=a=b.png", "a=b.png"), ("images=~/it's here", "~/it's here")])
def test_a_value_hydra_cannot_lex_means_its_own_text(word, value):
    assert value_of([word], word.partition("=")[0]) == value
    [quoted] = hydra_words([word])  # Hydra now reads the same text
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override(quoted).value() == value


@pytest.mark.parametrize("command", ["cam", "predict"])
@pytest.mark.parametrize("form", range(4))
def test_cam_and_predict_take_every_spelling_of_a_folder_with_a_space(spaced, capsys, command, form):
    run, images = spellings("runs/my run")[form], spellings("my photos")[form]
    rc, out = in_folder(spaced, capsys, command, f"run={run}", f"images={images}", "checkpoint=last", "device=cpu"
                        if command == "cam" else "topk=1")
    assert rc == 0, out.err
    line = out.out.strip().splitlines()[-1]
    assert line.startswith("runs/my run/cam/img00_16_gradcam.png" if command == "cam" else "my photos/img00_16.png ")


def test_eval_and_export_take_an_escaped_run_folder(spaced, capsys):
    run = spellings("runs/my run")[2]  # (the quoted spellings: cam and predict above)
    rc, out = in_folder(spaced, capsys, "eval", f"run={run}", "checkpoint=last", "device=cpu")
    assert rc == 0, out.err
    assert out.out.startswith("eval val (eager, checkpoint last)")
    rc, out = in_folder(spaced, capsys, "export", f"run={run}", "format=torchscript", "checkpoint=last")
    assert rc == 0, out.err
    assert "runs/my run/export/torchscript" in out.out


@pytest.mark.parametrize("form", [0, 1, 2])
def test_train_resumes_a_quoted_or_escaped_run_folder(hpml, tmp_path, form):
    assert hpml("train", *RUN, "model=mlp", "run_dir='runs/a run'").rc == 0
    r = hpml("train", f"resume={spellings('runs/a run')[form]}", "trainer.epochs=2")
    assert r.rc == 0, r.err
    assert "resuming runs/a run/checkpoints/last.pt at epoch 2" in r.err  # the saved model=mlp re-applied
    assert len((tmp_path / "runs/a run/epochs.csv").read_text().splitlines()) == 3


def test_train_and_prepare_read_a_tilde_root_as_the_home_folder(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for command in ("train", "prepare"):
        r = hpml(command, "dataset=image_folder", "dataset.root=~/my data")  # Hydra alone: LexerNoViableAltException
        assert r.rc == 2 and r.err.startswith(f"error: dataset.root={tmp_path}/home/my data does not exist"), r.err
        assert len(r.err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["train", "model='mlp"], ["cam", "run=runs/x", "images='a"],
                                  ["predict", "run=x", "images=a,b"]])
def test_a_word_no_rule_reads_is_one_line(hpml, args):
    r = hpml(*args)
    assert r.rc == 2 and r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1, r.err
    assert "='...'" in r.err  # the fix: quote it


def test_a_quoted_group_choice_is_a_choice(hpml):
    r = hpml("train", "model='resnt18'")
    assert r.rc == 2 and "unknown model 'resnt18' (did you mean 'resnet18'?)" in r.err
    assert hpml("train", "model='mlp'", *TINY, "trainer.epochs=1").rc == 0


def test_slurm_renders_the_same_job_for_every_spelling(hpml, tmp_path):
    for form in range(4):
        r = hpml("slurm", "model=mlp", f"dataset.root={spellings('my data')[form]}",
                 f"slurm.job_name={spellings('my-job')[form]}", f"slurm.script=sl/{form}.sbatch")
        assert r.rc == 0, r.err
        script = (tmp_path / f"sl/{form}.sbatch").read_text()
        assert "#SBATCH --job-name=my-job\n" in script
        srun = next(line for line in script.splitlines() if "hpml_bench train" in line)
        root = next(w for w in shlex.split(srun) if w.startswith("dataset.root="))
        assert parse_word(root).value() == "my data"  # what Hydra reads on the node


def test_slurm_quotes_a_job_name_sbatch_would_split(hpml, tmp_path):
    r = hpml("slurm", "model=mlp", "slurm.job_name='my job #2'", "slurm.script=s.sbatch")
    assert r.rc == 0, r.err
    script = (tmp_path / "s.sbatch").read_text()
    assert "#SBATCH --job-name='my job #2'\n" in script and "#SBATCH --nodes=1\n" in script


def test_bench_names_a_quoted_bench_file_without_its_quotes(hpml):
    r = hpml("bench", "bench='my bench.yaml'")
    assert r.rc == 2 and r.err.startswith("error: bench=my bench.yaml: no such file"), r.err


def test_report_takes_baseline_and_out_as_words_or_flags(hpml, tmp_path):
    for form in (0, 2):
        assert hpml("train", *RUN, "model=mlp", f"run_dir=runs/r{form}").rc == 0
    a = hpml("report", "runs/r0", "runs/r2", f"baseline={spellings('runs/r2')[0]}", "out='my report'")
    b = hpml("report", "runs/r0", "runs/r2", "--baseline", "runs/r2", "--out", "flag report")
    assert a.rc == b.rc == 0, a.err + b.err
    assert (tmp_path / "my report/report.md").read_text() == (tmp_path / "flag report/report.md").read_text()
