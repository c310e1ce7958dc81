"""What NVML (nvidia-ml-py's `pynvml`) says about the GPUs a run computes on: the facts that do
not change during a run (driver, CUDA, clocks' ceilings, PCIe link, NVLink, how two GPUs are
connected) and the state that does (clocks, power, temperature, throttle reasons).

Every query returns None (or leaves its key out) where NVML cannot answer: a MIG slice, an old
driver, a field the board does not report; a missing number never stops a run.
"""
from __future__ import annotations

import os
import uuid
from typing import Any, Optional

import torch

# NVML's clock-event (throttle) reason bits, by their pynvml names (the older "ThrottleReason"
# spelling has the same values), and the short names a record carries. GpuIdle is left out:
# an idle GPU (waiting for data) is not held back, and the data_s column already says so.
REASONS = (
    ("ApplicationsClocksSetting", "app_clocks"),
    ("SwPowerCap", "sw_power_cap"),
    ("HwSlowdown", "hw_slowdown"),
    ("SyncBoost", "sync_boost"),
    ("SwThermalSlowdown", "sw_thermal"),
    ("HwThermalSlowdown", "hw_thermal"),
    ("HwPowerBrakeSlowdown", "hw_power_brake"),
    ("DisplayClockSetting", "display_clocks"),
)
# The reasons that lower the clocks below what the board could run (a warning is printed).
SLOWDOWNS = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
# nvmlDeviceGetTopologyCommonAncestor's levels, as `nvidia-smi topo -m` names them.
TOPOLOGY = {0: "same board", 10: "PCIe, one switch (PIX)", 20: "PCIe, several switches (PXB)",
            30: "PCIe host bridge (PHB)", 40: "PCIe across host bridges, one NUMA node (NODE)",
            50: "across NUMA nodes (SYS)"}


def load_nvml() -> tuple[Any, Optional[str]]:
    """(pynvml, None) with NVML initialised, or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVML here
        return None, f"NVML did not start: {exc}"
    return pynvml, None


def _ask(call, *args, default=None):
    """One NVML query; its default where the board or driver does not answer."""
    try:
        value = call(*args)
    except Exception:  # NVMLError_NotSupported and friends, or a call this pynvml lacks
        return default
    return value.decode() if isinstance(value, bytes) else value


def handle_of(nvml, device: torch.device):
    """The NVML handle of a torch CUDA device, found by its UUID (torch's indices follow
    CUDA_VISIBLE_DEVICES, NVML's do not); by index only where nothing renumbers the GPUs."""
    raw = torch.cuda.get_device_properties(device).uuid
    text = str(uuid.UUID(bytes=bytes(raw.bytes))) if hasattr(raw, "bytes") else str(raw)
    handle = _ask(nvml.nvmlDeviceGetHandleByUUID, text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}")
    if handle is None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        handle = _ask(nvml.nvmlDeviceGetHandleByIndex, device.index or 0)
    return handle


def system_facts(nvml) -> dict[str, Any]:
    """Driver and CUDA versions: the driver's CUDA, the CUDA torch was built with, NCCL's."""
    cuda_driver = _ask(nvml.nvmlSystemGetCudaDriverVersion)
    try:
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception:  # a torch built without NCCL
        nccl = None
    return {"driver": _ask(nvml.nvmlSystemGetDriverVersion),
            "cuda_driver": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}" if cuda_driver else None,
            "cuda_runtime": torch.version.cuda, "nccl": nccl}


def device_facts(nvml, handle) -> dict[str, Any]:
    """One GPU's name, identity and ceilings (clocks, power), its PCIe link and NVLinks up."""
    memory = _ask(nvml.nvmlDeviceGetMemoryInfo, handle)
    pci = _ask(nvml.nvmlDeviceGetPciInfo, handle)
    limit_mw = _ask(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    link = [_ask(call, handle) for call in (nvml.nvmlDeviceGetCurrPcieLinkGeneration, nvml.nvmlDeviceGetCurrPcieLinkWidth,
                                             nvml.nvmlDeviceGetMaxPcieLinkGeneration, nvml.nvmlDeviceGetMaxPcieLinkWidth)]
    bus = getattr(pci, "busId", None)
    return {
        "name": _ask(nvml.nvmlDeviceGetName, handle),
        "uuid": _ask(nvml.nvmlDeviceGetUUID, handle),
        "pci_bus_id": bus.decode() if isinstance(bus, bytes) else bus,
        "memory_gib": round(memory.total / 2**30, 2) if memory is not None else None,
        "power_limit_w": round(limit_mw / 1000, 1) if limit_mw is not None else None,
        "max_sm_clock_mhz": _ask(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_SM),
        "max_mem_clock_mhz": _ask(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM),
        # a link that idles trains down to a lower generation: the current one is read under load too
        "pcie": None if None in link else f"gen {link[0]} x{link[1]} (max gen {link[2]} x{link[3]})",
        "nvlinks_up": nvlinks_up(nvml, handle),
    }


def nvlinks_up(nvml, handle) -> int:
    """NVLinks of this GPU that are up (0 on a PCIe-only board)."""
    return sum(_ask(nvml.nvmlDeviceGetNvLinkState, handle, link, default=0) == nvml.NVML_FEATURE_ENABLED
               for link in range(nvml.NVML_NVLINK_MAX_LINKS))


def links_from(nvml, handle) -> dict[str, str]:
    """uuid -> how this GPU reaches that one, for every other GPU on this host: NVLink where
    peer-to-peer over NVLink works, else the PCIe path (the topology's common ancestor)."""
    mine = _ask(nvml.nvmlDeviceGetUUID, handle)
    up = nvlinks_up(nvml, handle)
    links = {}
    for index in range(_ask(nvml.nvmlDeviceGetCount, default=0)):
        other = _ask(nvml.nvmlDeviceGetHandleByIndex, index)
        theirs = _ask(nvml.nvmlDeviceGetUUID, other) if other is not None else None
        if theirs is None or theirs == mine:
            continue
        nvlink = _ask(nvml.nvmlDeviceGetP2PStatus, handle, other, nvml.NVML_P2P_CAPS_INDEX_NVLINK)
        if nvlink == nvml.NVML_P2P_STATUS_OK:
            links[theirs] = f"NVLink ({up} links up)"
        else:
            level = _ask(nvml.nvmlDeviceGetTopologyCommonAncestor, handle, other)
            links[theirs] = TOPOLOGY.get(level, "unknown")
    return links


def reasons_mask(nvml, handle) -> Optional[int]:
    """The clock-event reason bits now (the newer name first; older drivers know the other)."""
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        call = getattr(nvml, name, None)
        mask = _ask(call, handle) if call else None
        if mask is not None:
            return mask
    return None


def reason_names(nvml, mask: Optional[int]) -> list[str]:
    """The short names of the reasons set in `mask` (GpuIdle left out)."""
    if not mask:
        return []
    bits = [(getattr(nvml, f"nvmlClocksEventReason{name}", getattr(nvml, f"nvmlClocksThrottleReason{name}", 0)), short)
            for name, short in REASONS]
    return [short for bit, short in bits if bit and mask & bit]


def sample(nvml, handle) -> dict[str, Any]:
    """The state now: SM and memory clocks (MHz), power (W), temperature (C), reasons."""
    power_mw = _ask(nvml.nvmlDeviceGetPowerUsage, handle)
    return {
        "sm": _ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        "mem": _ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        "power": power_mw / 1000 if power_mw is not None else None,
        "temp": _ask(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        "reasons": reason_names(nvml, reasons_mask(nvml, handle)),
    }
