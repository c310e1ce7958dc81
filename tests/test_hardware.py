"""The hardware state beside the numbers: NVML sampling of GPU runs (clocks, power, temperature,
throttle reasons per epoch; driver, CUDA, links in summary.json), tested on CPU with pynvml's
functions replaced by a fake GPU; and on a CPU run nothing is recorded and NVML never starts."""
from __future__ import annotations

import itertools
import json
import time
import uuid
from types import SimpleNamespace

import pandas as pd
import pynvml
import torch

from hpml_bench.bench.results import cell_medians, display_columns, markdown_table, run_row
from hpml_bench.callbacks import hardware
from hpml_bench.callbacks.hardware import HardwareMonitor, combine, describe, over_samples, throttle_text
from hpml_bench.callbacks.nvml import handle_of
from tests.conftest import TINY

UUIDS = ("GPU-aaaa", "GPU-bbbb", "GPU-cccc")  # three GPUs on the fake host; the run uses the first two


class FakeGpu:
    """What the fake NVML answers for one device; `sm` cycles to make the mean checkable."""

    def __init__(self, uuid: str, sm=(1500, 1700), reasons=(0, pynvml.nvmlClocksEventReasonSwPowerCap)):
        self.uuid, self.sm, self.reasons = uuid, itertools.cycle(sm), itertools.cycle(reasons)


def fake_nvml(monkeypatch, calls: list[str] | None = None) -> dict[str, FakeGpu]:
    """Replace the pynvml functions hpml calls with a host of three GPUs: 0 and 1 joined by
    NVLink, 2 behind a PCIe host bridge; GPU 1 runs cooler but lower clocks."""
    gpus = {u: FakeGpu(u) for u in UUIDS}
    gpus["GPU-bbbb"] = FakeGpu("GPU-bbbb", sm=(1400,), reasons=(pynvml.nvmlClocksEventReasonGpuIdle,))
    calls = calls if calls is not None else []

    def nvml_init():
        calls.append("init")

    def unsupported(*args):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    answers = {
        "nvmlInit": nvml_init,
        "nvmlShutdown": lambda: calls.append("shutdown"),
        "nvmlSystemGetDriverVersion": lambda: b"550.54.15",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetCount": lambda: len(UUIDS),
        "nvmlDeviceGetHandleByIndex": lambda i: gpus[UUIDS[i]],
        "nvmlDeviceGetHandleByUUID": lambda uuid: gpus[uuid.decode() if isinstance(uuid, bytes) else uuid],
        "nvmlDeviceGetUUID": lambda h: h.uuid,
        "nvmlDeviceGetName": lambda h: "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=f"00000000:{UUIDS.index(h.uuid) + 1:02X}:00.0".encode()),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=80 * 2**30),
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
        "nvmlDeviceGetMaxClockInfo": lambda h, kind: 1980 if kind == pynvml.NVML_CLOCK_SM else 2619,
        "nvmlDeviceGetCurrPcieLinkGeneration": lambda h: 5,
        "nvmlDeviceGetCurrPcieLinkWidth": lambda h: 16,
        "nvmlDeviceGetMaxPcieLinkGeneration": lambda h: 5,
        "nvmlDeviceGetMaxPcieLinkWidth": unsupported,  # an answer a board may not give
        "nvmlDeviceGetNvLinkState": lambda h, link: int(h.uuid != "GPU-cccc" and link < 18),
        "nvmlDeviceGetP2PStatus": lambda a, b, index: (pynvml.NVML_P2P_STATUS_OK if {a.uuid, b.uuid} == {"GPU-aaaa", "GPU-bbbb"}
                                                      else pynvml.NVML_P2P_STATUS_NOT_SUPPORTED),
        "nvmlDeviceGetTopologyCommonAncestor": lambda a, b: pynvml.NVML_TOPOLOGY_HOSTBRIDGE,
        "nvmlDeviceGetClockInfo": lambda h, kind: next(h.sm) if kind == pynvml.NVML_CLOCK_SM else 2619,
        "nvmlDeviceGetPowerUsage": lambda h: 350_000 if h.uuid == "GPU-aaaa" else 300_000,
        "nvmlDeviceGetTemperature": lambda h, sensor: 61 if h.uuid == "GPU-aaaa" else 55,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: next(h.reasons),
    }
    for name, answer in answers.items():
        monkeypatch.setattr(pynvml, name, answer)
    return gpus


def _props(device):
    return SimpleNamespace(uuid=UUIDS[torch.device(device).index or 0][len("GPU-"):])  # torch's UUID has no prefix


def _strategy(devices: int = 2):
    return SimpleNamespace(rank=0, is_main=True, backend="nccl", gather_objects=lambda obj: [obj],
                           local_devices=[torch.device("cuda", i) for i in range(devices)])


def test_a_gpu_epoch_records_clocks_power_temperature_and_throttle_shares(monkeypatch):
    calls: list[str] = []
    fake_nvml(monkeypatch, calls)
    monkeypatch.setattr(torch.cuda, "get_device_properties", _props)
    info: dict = {}
    monitor = HardwareMonitor(info, every_s=0.005)
    trainer = SimpleNamespace(strategy=_strategy(), epoch=0, history=[])
    monitor.on_fit_start(trainer)
    hw = info["hardware"]
    assert (hw["driver"], hw["cuda_driver"], hw["cuda_runtime"], hw["backend"]) == ("550.54.15", "12.4", torch.version.cuda, "nccl")
    first = hw["gpus"][0]
    assert (first["name"], first["uuid"], first["pci_bus_id"], first["device"]) == (
        "NVIDIA H100 80GB HBM3", "GPU-aaaa", "00000000:01:00.0", "cuda:0")
    assert (first["memory_gib"], first["power_limit_w"], first["max_sm_clock_mhz"], first["nvlinks_up"]) == (80.0, 700.0, 1980, 18)
    assert first["pcie"] is None  # one of its four answers missing: not a half-known link
    assert hw["interconnect"] == {"gpu0-gpu1": "NVLink (18 links up)"}
    monitor.on_train_epoch_start(trainer)
    time.sleep(0.2)  # the thread samples every 5 ms
    record: dict = {}
    monitor.on_train_epoch_end(trainer, record)
    # GPU 0 alternates 1500/1700 MHz, GPU 1 holds 1400: the slower one is the run's clock
    assert record["gpu_sm_clock_mhz"] == 1400 and record["gpu_mem_clock_mhz"] == 2619
    assert record["gpu_power_w"] == 350 and record["gpu_temp_c"] == 61
    share = int(record["gpu_throttle"].removeprefix("sw_power_cap ").removesuffix("%"))
    assert 30 <= share <= 70, record["gpu_throttle"]  # set in every other sample of GPU 0; GpuIdle is not a throttle
    assert record["gpu_ranks"] == [{k: record[k] for k in (*hardware.HW_KEYS, hardware.THROTTLE)}]
    trainer.history = [{"epoch": 1, "warmup": False, **record}]
    monitor.on_fit_end(trainer)
    assert info["median_gpu_sm_clock_mhz"] == 1400 and hw["throttle"].startswith("sw_power_cap")
    assert calls == ["init", "shutdown"] and not monitor.sampler._thread.is_alive()


def test_a_torch_device_finds_its_nvml_handle_by_uuid_else_by_index(monkeypatch):
    gpus = fake_nvml(monkeypatch)
    known = uuid.UUID("12345678-1234-5678-1234-567812345678")
    gpus[f"GPU-{known}"] = FakeGpu(f"GPU-{known}")
    monkeypatch.setattr(torch.cuda, "get_device_properties",  # torch's UUID as raw bytes
                        lambda device: SimpleNamespace(uuid=SimpleNamespace(bytes=list(known.bytes))))
    assert handle_of(pynvml, torch.device("cuda", 0)).uuid == f"GPU-{known}"
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(uuid="ffff"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert handle_of(pynvml, torch.device("cuda", 1)).uuid == "GPU-bbbb"  # nothing renumbers: the index holds
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,1")
    assert handle_of(pynvml, torch.device("cuda", 1)) is None  # renumbered: no guess


def test_samples_reduce_per_device_then_over_gpus():
    samples = [{"sm": 1000, "mem": 2000, "power": 100.0, "temp": 50, "reasons": ["hw_thermal"]},
               {"sm": 1200, "mem": 2000, "power": 300.0, "temp": 70, "reasons": []}]
    one = over_samples(samples)
    assert (one["gpu_sm_clock_mhz"], one["gpu_power_w"], one["gpu_temp_c"], one["throttle"]) == (1100, 200, 70, {"hw_thermal": 0.5})
    other = {**one, "gpu_sm_clock_mhz": 900, "gpu_temp_c": 40, "throttle": {"hw_thermal": 0.25, "sw_power_cap": 1.0}}
    both = combine([one, None, other])
    assert (both["gpu_sm_clock_mhz"], both["gpu_temp_c"]) == (900, 70)
    assert throttle_text(both["throttle"]) == "sw_power_cap 100%, hw_thermal 50%" and throttle_text({}) == "none"
    assert over_samples([]) is None and combine([None, None]) is None


def test_gpus_on_two_hosts_talk_over_the_network():
    gpu = {"facts": {"uuid": "GPU-x"}, "links": {}, "device": "cuda:0"}
    ranks = [{"rank": 0, "host": "n1", "devices": [gpu]}, {"rank": 1, "host": "n2", "devices": [gpu]},
             {"rank": 2, "host": "n3", "nvml": "NVML did not start: driver not loaded"}]
    hw = describe({}, ranks, "nccl")
    assert [g["host"] for g in hw["gpus"]] == ["n1", "n2"]
    assert hw["interconnect"] == {"between_hosts": "network (nccl)"}
    assert hw["nvml"] == "1 of 3 ranks without NVML: NVML did not start: driver not loaded"


def test_a_run_with_the_monitor_writes_hardware_to_summary_epochs_and_ranks(hpml, tmp_path, monkeypatch):
    """The whole path through a real run: the monitor on (as on a GPU run), a fake NVML."""
    fake_nvml(monkeypatch)
    monkeypatch.setattr(HardwareMonitor, "applies", staticmethod(lambda strategy: True))
    monkeypatch.setattr(hardware, "handle_of", lambda nvml, device: nvml.nvmlDeviceGetHandleByUUID("GPU-aaaa"))
    result = hpml("train", *TINY, "model=mlp", "trainer.checkpoint_every=0", "run_dir=run")
    assert result.rc == 0, result.err
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["hardware"]["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert summary["median_gpu_power_w"] == 350 and summary["hardware"]["throttle"] != ""
    epochs, ranks = pd.read_csv(tmp_path / "run/epochs.csv"), pd.read_csv(tmp_path / "run/ranks.csv")
    assert "gpu_ranks" not in epochs and set(epochs["gpu_temp_c"]) == {61}
    assert list(ranks["gpu_sm_clock_mhz"]) == list(epochs["gpu_sm_clock_mhz"])
    assert "GPU 1" in result.out and " MHz 350 W 61 C" in result.out  # the epoch line
    # a bench cell carries it: bench.csv's row, the cell's medians, the table's columns
    row = run_row(tmp_path / "run")
    assert (row["gpu"], row["driver"], row["gpu_power_w"]) == ("NVIDIA H100 80GB HBM3", "550.54.15", 350)
    rows = pd.DataFrame([{"cell": "a", "model": "mlp", **row}, {"cell": "a", "model": "mlp", **row}])
    table = cell_medians(rows, ["model"])
    columns = display_columns(["model"], table)
    assert {"gpu_sm_clock_mhz", "gpu_temp_c", "gpu", "driver", "gpu_throttle"} <= set(columns)
    assert "comm_exposed_s" not in columns  # no split recorded: no empty column
    assert "| NVIDIA H100 80GB HBM3 | 550.54.15 |" in markdown_table(table, columns)


def test_a_bench_row_carries_the_split_where_the_run_recorded_it(hpml, tmp_path):
    result = hpml("train", *TINY, "model=mlp", "trainer.checkpoint_every=0", "run_dir=run")
    assert result.rc == 0, result.err
    plain = run_row(tmp_path / "run")
    assert not {"gpu", "gpu_sm_clock_mhz"} & set(plain)  # a CPU run: no GPU state
    assert plain["comm_exposed_s"] == 0 and plain["compute_s"] > 0  # one process: no communication, zero
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    summary.update({"median_compute_s": 0.5, "median_comm_s": 0.2, "median_comm_exposed_s": 0.1,
                    "median_comm_bytes": 4096})
    (tmp_path / "run/summary.json").write_text(json.dumps(summary))
    row = run_row(tmp_path / "run")
    assert (row["compute_s"], row["comm_exposed_s"], row["comm_bytes"]) == (0.5, 0.1, 4096)
    table = cell_medians(pd.DataFrame([{"model": "mlp", **row}]), ["model"])
    columns = display_columns(["model"], table)
    assert "split" in columns and "comm_bytes" in columns  # the split as one column, the bytes beside it
    assert "| 4,096 |" in markdown_table(table, columns)


def test_a_cpu_run_records_no_hardware_and_never_starts_nvml(hpml, tmp_path, monkeypatch):
    calls: list[str] = []
    fake_nvml(monkeypatch, calls)
    result = hpml("train", *TINY, "model=mlp", "trainer.checkpoint_every=0", "run_dir=run")
    assert result.rc == 0, result.err
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert "hardware" not in summary and not any(k.startswith(("median_gpu", "mean_gpu")) for k in summary)
    for table in ("epochs.csv", "ranks.csv"):
        assert not [c for c in pd.read_csv(tmp_path / "run" / table).columns if c.startswith("gpu_")]
    assert calls == []


def test_gpu_sample_s_must_not_be_negative(hpml):
    result = hpml("train", *TINY, "model=mlp", "trainer.gpu_sample_s=-1")
    assert result.rc == 2 and "error: trainer.gpu_sample_s=-1" in result.err and "Traceback" not in result.err


def test_no_thread_with_zero_interval_still_one_sample_per_epoch(monkeypatch):
    fake_nvml(monkeypatch)
    monkeypatch.setattr(torch.cuda, "get_device_properties", _props)
    info: dict = {}
    monitor = HardwareMonitor(info, every_s=0.0)
    trainer = SimpleNamespace(strategy=_strategy(devices=1), epoch=0, history=[])
    monitor.on_fit_start(trainer)
    assert not monitor.sampler._thread.is_alive()
    monitor.on_train_epoch_start(trainer)
    record: dict = {}
    monitor.on_train_epoch_end(trainer, record)
    assert record["gpu_sm_clock_mhz"] in (1500, 1700) and record["gpu_throttle"] in ("none", "sw_power_cap 100%")
