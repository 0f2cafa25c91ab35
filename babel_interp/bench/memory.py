"""Peak tensor memory of a piece of work, on CPU or GPU.

On a GPU this is ``torch.cuda.max_memory_allocated`` above what was allocated before. On a CPU,
PyTorch keeps no such counter, so :func:`peak_tensor_bytes` runs the work under
``torch.profiler`` with ``profile_memory=True``, which records every allocation and free of
PyTorch's CPU allocator with its size; the running sum of those events is the bytes of tensors
alive, and its maximum the peak: the same quantity ``max_memory_allocated`` reports on a GPU,
without the interpreter, libraries, NumPy buffers or the C allocator's fragmentation that a
resident-set reading would add (and without its sensitivity to other processes).
Tensors allocated before the work began are not seen: start the measurement before the model
is built to count its weights.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

MEASURED = "babel_interp.measured"


@dataclass
class PeakMemory:
    """The peak bytes of live tensors during the measured part (``peak``), the bytes live when
    it began (``start``) and the peak over everything profiled (``overall``)."""

    peak: int
    start: int
    overall: int


def peak_tensor_bytes(
    setup: Callable[[], Any], measured: Callable[[Any], Any], device: str = "cpu"
) -> PeakMemory:
    """Peak tensor memory of ``measured(setup())``, ``setup``'s allocations included.

    ``setup`` builds what the measured part works on (a model, a trainer, a warm-up step), so
    its tensors are counted as alive when the measured part starts.
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        state = setup()
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device) - base
        torch.cuda.reset_peak_memory_stats(device)
        measured(state)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return PeakMemory(peak=peak, start=start, overall=peak)
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        state = setup()
        with torch.profiler.record_function(MEASURED):
            measured(state)
    return _cpu_peak(prof)


def _cpu_peak(prof: torch.profiler.profile) -> PeakMemory:
    events = list(prof.profiler.kineto_results.events())  # type: ignore[union-attr]
    window = [e for e in events if e.name() == MEASURED]
    if not window:
        raise RuntimeError("the profiler recorded no measured region")
    t0 = window[0].start_ns()
    t1 = t0 + window[0].duration_ns()
    cpu = torch._C._autograd.DeviceType.CPU
    mem = sorted(
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == "[memory]" and e.device_type() == cpu
    )
    live = overall = 0
    start = peak = None
    for t, nbytes in mem:
        if start is None and t >= t0:
            start = live
            peak = live
        live += nbytes
        overall = max(overall, live)
        if t0 <= t <= t1:
            peak = max(peak or 0, live)
    if start is None:
        start = peak = live
    return PeakMemory(peak=int(peak or 0), start=int(start), overall=int(overall))
