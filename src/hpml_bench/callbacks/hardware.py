"""The hardware state beside the numbers (GPU runs): what explains a slow or noisy epoch.

Every rank samples the GPUs it computes on through NVML, from a background thread every
`trainer.gpu_sample_s` seconds while it trains (plus one sample at each epoch's end), and the
main rank records per epoch the lowest SM and memory clocks, the highest power and temperature
and the throttle reasons seen (gpu_* columns of epochs.csv, each rank's in ranks.csv), and in
summary.json `hardware`: driver, CUDA and NCCL versions, each GPU's ceilings and links, and how
the GPUs reach each other. CPU runs never start it (nothing recorded, NVML never loaded).
"""
from __future__ import annotations

import os
import socket
import statistics
import sys
import threading
import time
from typing import Any, Optional

from hpml_bench.callbacks.base import Callback
from hpml_bench.callbacks.nvml import SLOWDOWNS, device_facts, handle_of, links_from, load_nvml, sample, system_facts

# The per-epoch columns (the names the other branches' tables read; absent on CPU).
HW_KEYS = ("gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_power_w", "gpu_temp_c")
THROTTLE = "gpu_throttle"


class Sampler:
    """Samples a process's GPUs every `every_s` seconds on a daemon thread (0: never; only
    `take_now` samples). NVML queries take microseconds and release the GIL."""

    def __init__(self, nvml, handles: list, every_s: float):
        self.nvml, self.handles = nvml, handles
        self.samples: list[tuple[float, int, dict]] = []  # (perf_counter, device position, sample)
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every_s,), name="hpml-nvml", daemon=True)
        if every_s > 0:
            self._thread.start()

    def _loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.take_now()

    def take_now(self) -> None:
        now = time.perf_counter()
        taken = [(now, i, sample(self.nvml, h)) for i, h in enumerate(self.handles)]
        with self._lock:
            self.samples.extend(taken)

    def window(self, start: float, end: float) -> list[list[dict]]:
        """Each device's samples taken in [start, end]; older ones are dropped."""
        with self._lock:
            inside = [(i, s) for t, i, s in self.samples if start <= t <= end]
            self.samples = [entry for entry in self.samples if entry[0] > end]
        return [[s for i, s in inside if i == device] for device in range(len(self.handles))]

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def _mean(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def over_samples(samples: list[dict]) -> Optional[dict]:
    """One device over an epoch: mean clocks and power, the highest temperature, and the share
    of samples each throttle reason was set in."""
    if not samples:
        return None
    temps = [s["temp"] for s in samples if s["temp"] is not None]
    reasons = {name for s in samples for name in s["reasons"]}
    return {"gpu_sm_clock_mhz": _mean([s["sm"] for s in samples]), "gpu_mem_clock_mhz": _mean([s["mem"] for s in samples]),
            "gpu_power_w": _mean([s["power"] for s in samples]), "gpu_temp_c": max(temps) if temps else None,
            "throttle": {r: sum(r in s["reasons"] for s in samples) / len(samples) for r in sorted(reasons)}}


def combine(states: list[Optional[dict]]) -> Optional[dict]:
    """Several GPUs as one: the lowest clocks (the slowest GPU sets a synchronous step's pace),
    the highest power and temperature, each reason's largest share."""
    states = [s for s in states if s]
    if not states:
        return None

    def pick(key, how):
        values = [s[key] for s in states if s.get(key) is not None]
        return how(values) if values else None

    throttle: dict[str, float] = {}
    for s in states:
        for reason, share in s["throttle"].items():
            throttle[reason] = max(throttle.get(reason, 0.0), share)
    return {"gpu_sm_clock_mhz": pick("gpu_sm_clock_mhz", min), "gpu_mem_clock_mhz": pick("gpu_mem_clock_mhz", min),
            "gpu_power_w": pick("gpu_power_w", max), "gpu_temp_c": pick("gpu_temp_c", max), "throttle": throttle}


def throttle_text(throttle: dict[str, float]) -> str:
    """'none', or each reason with the share of samples it was set in: 'sw_power_cap 40%'."""
    if not throttle:
        return "none"
    return ", ".join(f"{r} {share * 100:.0f}%" for r, share in sorted(throttle.items(), key=lambda kv: -kv[1]))


def columns(state: Optional[dict]) -> dict[str, Any]:
    """A state as the record's columns (rounded for reading; units in the names)."""
    if not state:
        return {}
    out = {key: None if state[key] is None else round(state[key], 1) for key in HW_KEYS}
    out[THROTTLE] = throttle_text(state["throttle"])
    return out


def hardware_text(record: dict) -> str:
    """'  GPU 1980/2619 MHz 512 W 61 C' (+ the throttle reasons) for the epoch line; '' on CPU."""
    if record.get("gpu_sm_clock_mhz") is None:
        return ""
    power, temp = record.get("gpu_power_w"), record.get("gpu_temp_c")
    text = f"  GPU {record['gpu_sm_clock_mhz']:.0f}/{record.get('gpu_mem_clock_mhz') or 0:.0f} MHz"
    text += (f" {power:.0f} W" if power is not None else "") + (f" {temp:.0f} C" if temp is not None else "")
    throttle = record.get(THROTTLE, "none")
    return text + ("" if throttle == "none" else f" throttle {throttle}")


def describe(system: dict, ranks: list[dict], backend: Optional[str]) -> dict[str, Any]:
    """summary.json's `hardware`: versions, every GPU (rank, host, facts) and how each pair of
    GPUs on one host is connected; GPUs on different hosts talk over the network."""
    gpus, links = [], []
    for rank in ranks:
        for device in rank.get("devices", []):
            gpus.append({"rank": rank["rank"], "host": rank["host"], "device": device["device"], **device["facts"]})
            links.append(device["links"])
    interconnect: dict[str, str] = {}
    for i, a in enumerate(gpus):
        for j in range(i + 1, len(gpus)):
            if a["host"] == gpus[j]["host"]:
                interconnect[f"gpu{i}-gpu{j}"] = links[i].get(gpus[j]["uuid"], "unknown")
    if len({g["host"] for g in gpus}) > 1:
        interconnect["between_hosts"] = f"network ({backend or 'no process group'})"
    out = {**system, "backend": backend, "gpus": gpus, "interconnect": interconnect,
           "nccl_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("NCCL_")}}
    missing = [r["nvml"] for r in ranks if r.get("nvml")]
    if missing:
        out["nvml"] = f"{len(missing)} of {len(ranks)} ranks without NVML: {missing[0]}"
    return out


class HardwareMonitor(Callback):
    """On every rank of a CUDA run (it gathers over the ranks); writes info["hardware"] and the
    record's gpu_* columns on the main rank."""

    @staticmethod
    def applies(strategy) -> bool:
        """A CUDA run's (on CPU nothing is sampled and NVML is never loaded)."""
        return strategy.device.type == "cuda"

    def __init__(self, info: dict, every_s: float, load=load_nvml):
        self.info, self.every_s, self.load = info, every_s, load
        self.nvml, self.sampler = None, None
        self.throttle: dict[int, dict[str, float]] = {}  # epoch (1-based) -> reason -> share
        self.epoch_start = 0.0

    def on_fit_start(self, trainer) -> None:
        strategy = trainer.strategy
        self.nvml, why = self.load()
        mine: dict[str, Any] = {"rank": strategy.rank, "host": socket.gethostname(), "nvml": why}
        handles = []
        if self.nvml is not None:
            mine["devices"] = []
            for device in strategy.local_devices:
                handle = handle_of(self.nvml, device)
                if handle is None:
                    mine["nvml"] = f"no NVML handle for {device} (a MIG slice?)"
                    continue
                handles.append(handle)
                mine["devices"].append({"device": str(device), "facts": device_facts(self.nvml, handle),
                                        "links": links_from(self.nvml, handle)})
        everyone = strategy.gather_objects(mine)
        if strategy.is_main:
            system = system_facts(self.nvml) if self.nvml is not None else {}
            self.info["hardware"] = describe(system, everyone, getattr(strategy, "backend", None))
        self.sampler = Sampler(self.nvml, handles, self.every_s) if handles else None

    def on_train_epoch_start(self, trainer) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, record: dict) -> None:
        mine = None
        if self.sampler is not None:
            self.sampler.take_now()  # at least one sample per epoch, right after its last step
            mine = combine([over_samples(s) for s in self.sampler.window(self.epoch_start, time.perf_counter())])
        everyone = trainer.strategy.gather_objects(mine)
        if not trainer.strategy.is_main or not any(everyone):
            return
        whole = combine(everyone)
        record.update(columns(whole))
        record["gpu_ranks"] = [columns(state) for state in everyone]
        epoch = trainer.epoch + 1  # the record's (1-based) epoch number
        self.throttle[epoch] = whole["throttle"]

    def on_fit_end(self, trainer) -> None:
        if self.sampler is not None:
            self.sampler.close()
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # already shut down: nothing to release
                pass
        if not trainer.strategy.is_main or "hardware" not in self.info:
            return
        measured = [r for r in trainer.history if not r["warmup"]] or trainer.history
        for key in HW_KEYS:
            values = [r[key] for r in measured if r.get(key) is not None]
            if values:
                self.info[f"median_{key}"] = statistics.median(values)
                self.info[f"mean_{key}"] = statistics.fmean(values)
        throttle = combine([{"throttle": self.throttle[r["epoch"]]} for r in measured if r["epoch"] in self.throttle])
        self.info["hardware"]["throttle"] = throttle_text(throttle["throttle"] if throttle else {})
        slow = {r: s for r, s in (throttle or {"throttle": {}})["throttle"].items() if r in SLOWDOWNS}
        if slow:
            print(f"hpml: the GPU clocks were held back in the measured epochs ({throttle_text(slow)} of the "
                  "samples): these numbers are below what the GPU can do; summary.json `hardware` has the details",
                  file=sys.stderr, flush=True)
