"""hpml's trainer against a plain hand-written PyTorch loop (and PyTorch Lightning): same
model, data, batch, optimizer. Two forms:

  in-process (--form inprocess): hpml's `run_training` and a plain loop in this process,
      alternated (A B, B A, ...); what the trainer itself costs.
  whole-process (--form process, the default): each contender is its own fresh Python
      process, as a user runs it: `hpml train ...` (the real CLI; samples/s read from the
      epochs.csv in its run folder), a plain script, and a Lightning 2.x script when
      `lightning` is installed (pip install -e '.[bench]'). Start-up is not timed: each
      process trains a warm-up epoch and a measured epoch, and reports the measured epoch's
      samples / wall seconds (loader iteration included, validation excluded).

The order rotates every round and alternates direction (ABC, CBA, BCA, ACB, ...) so machine
noise and run order hit every contender alike. Prints each round, the medians and the ratios
(median of per-round ratios to the plain loop).

    python benchmarks/loop_overhead.py --rounds 5 --steps 20                # whole-process
    python benchmarks/loop_overhead.py --form inprocess --rounds 5 --steps 20
    python benchmarks/loop_overhead.py --device cuda --rounds 5 --steps 100 --hpml-arg dataset.synthetic_on=host
    python benchmarks/loop_overhead.py --tiny [--form inprocess]             # seconds: the test suite's form
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

NUM_CLASSES = 10


def overrides(args) -> list[str]:
    """The hpml run the plain and Lightning loops copy (SGD lr 0.01, momentum 0.9, no weight decay)."""
    return [f"model={args.model}", "dataset=synthetic", f"dataset.image_size={args.image_size}",
            f"dataset.batch_size={args.batch_size}", f"dataset.num_train={args.batch_size * args.steps}",
            f"dataset.num_classes={NUM_CLASSES}", "dataset.num_val=1", "trainer.checkpoint_every=0",
            "trainer.progress=never", "optimizer=sgd", "optimizer.lr=0.01", "optimizer.momentum=0.9",
            "optimizer.weight_decay=0", "scheduler=constant", f"device={args.device}", *args.hpml_arg]


# -- whole-process form: the three contenders, each run as `python loop_overhead.py --worker X`

def _data(args):
    gen = torch.Generator().manual_seed(0)
    n = args.batch_size * args.steps
    images = torch.randn(n, 3, args.image_size, args.image_size, generator=gen)
    return torch.utils.data.TensorDataset(images, torch.randint(0, NUM_CLASSES, (n,), generator=gen))


def _model(args) -> nn.Module:
    import torchvision

    return getattr(torchvision.models, args.model)(num_classes=NUM_CLASSES)


def plain_worker(args) -> float:
    """What a user writes by hand: DataLoader, forward, loss, backward, step."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    loader = torch.utils.data.DataLoader(_data(args), batch_size=args.batch_size, shuffle=True, pin_memory=cuda)
    model = _model(args).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(2):  # warm-up epoch, measured epoch
        samples, start = 0, time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            samples += len(y)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return samples / seconds


def lightning_worker(args) -> float:
    """The same loop as a LightningModule under lightning.Trainer (no logger, bar, checkpoints)."""
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.loss_fn = _model(args), nn.CrossEntropyLoss()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.loss_fn(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    class EpochClock(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            if torch.cuda.is_available() and args.device == "cuda":
                torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.start

    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(_data(args), batch_size=args.batch_size, shuffle=True)
    clock = EpochClock()
    trainer = L.Trainer(max_epochs=2, accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(Module(), loader)
    return args.batch_size * args.steps / clock.seconds


def run_worker(args, contender: str, folder: Path) -> float:
    """samples/s of the measured (second) epoch of one fresh process."""
    if contender == "hpml":
        cmd = [sys.executable, "-m", "hpml_bench", "train", *overrides(args), "trainer.epochs=2",
               "trainer.warmup_epochs=1", f"run_dir={folder}"]
    else:
        cmd = [sys.executable, __file__, "--worker", contender, "--device", args.device, "--model", args.model, "--image-size",
               str(args.image_size), "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HPML_RUN_ID": ""})
    if proc.returncode:
        raise SystemExit(f"{contender} failed:\n{proc.stderr[-2000:]}")
    if contender == "hpml":
        import pandas as pd

        return float(pd.read_csv(folder / "epochs.csv")["samples_per_s"].iloc[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])["samples_per_s"]


def process_form(args) -> dict[str, list[float]]:
    contenders = ["hpml", "plain"] + (["lightning"] if importlib.util.find_spec("lightning") else [])
    if len(contenders) == 2:
        print("lightning is not installed (pip install -e '.[bench]'): comparing hpml and plain only")
    results: dict[str, list[float]] = {c: [] for c in contenders}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            shift = (i // 2) % len(contenders)
            order = contenders[shift:] + contenders[:shift]
            order = order if i % 2 == 0 else order[::-1]
            speeds = {c: run_worker(args, c, Path(tmp) / f"r{i}-{c}") for c in order}
            for c, v in speeds.items():
                results[c].append(v)
            print(f"round {i} ({' '.join(order)}): " + ", ".join(f"{c} {speeds[c]:.1f}" for c in contenders)
                  + " samples/s", flush=True)
    return results


# -- in-process form ---------------------------------------------------------------

def hpml_round(args, folder: Path) -> float:
    """samples/s of one hpml epoch (its own run_s: the loop, without start-up or validation)."""
    from hpml_bench.train.config import compose_train
    from hpml_bench.train.run import run_training

    with contextlib.redirect_stdout(io.StringIO()):  # the epoch table, once per round, is noise here
        records = run_training(compose_train(overrides(args) + ["trainer.epochs=1", "trainer.warmup_epochs=0",
                                                                f"run_dir={folder}"]), folder)
    return records[-1]["samples_per_s"]


def bare_round(args) -> float:
    """The same epoch written by hand: loader, forward, loss, backward, step."""
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(_data(args), batch_size=args.batch_size, shuffle=True)
    model = _model(args).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    samples, start = 0, time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        samples += len(y)
    return samples / (time.perf_counter() - start)


def inprocess_form(args) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"hpml": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds + 1):
            # ABBA order: whichever runs second in a round does not always pay for it.
            if i % 2 == 0:
                h, b = hpml_round(args, Path(tmp) / f"r{i}"), bare_round(args)
            else:
                b, h = bare_round(args), hpml_round(args, Path(tmp) / f"r{i}")
            print(f"round {i}{' (warm-up)' if i == 0 else ''}: hpml {h:.1f} samples/s, plain {b:.1f} samples/s, "
                  f"ratio {h / b:.3f}", flush=True)
            if i:
                results["hpml"].append(h)
                results["plain"].append(b)
    return results


def report(results: dict[str, list[float]], args) -> None:
    plain = results["plain"]
    print(f"\n{args.form}: {args.model} {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.steps} steps per epoch, {len(plain)} rounds, "
          f"{torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU, {torch.get_num_threads()} threads'}")
    print("| contender | median samples/s | vs plain (median of per-round ratios) |\n|---|---|---|")
    for name, speeds in results.items():
        ratio = statistics.median(s / p for s, p in zip(speeds, plain))
        print(f"| {name} | {statistics.median(speeds):.1f} | {ratio:.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--form", choices=("process", "inprocess"), default="process")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: whole-process form only")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="batches per epoch")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--hpml-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra override for hpml's run (repeatable), e.g. dataset.synthetic_on=host")
    p.add_argument("--worker", choices=("plain", "lightning"), help=argparse.SUPPRESS)
    p.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = p.parse_args()
    if args.tiny:
        args.image_size, args.batch_size, args.steps, args.rounds = 16, 4, 2, 1
    if args.worker:
        speed = {"plain": plain_worker, "lightning": lightning_worker}[args.worker](args)
        print(json.dumps({"samples_per_s": speed}))
        return
    report(process_form(args) if args.form == "process" else inprocess_form(args), args)


if __name__ == "__main__":
    main()
