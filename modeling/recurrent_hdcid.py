"""LSTMs that run under autocast on every device torch supports.

Under ``torch.autocast`` an ``nn.LSTM`` is cast to the autocast dtype (bf16 or fp16). On CUDA that is
cuDNN's reduced-precision RNN; on CPUs torch hands the cast LSTM to oneDNN, which has no bf16/fp16
LSTM primitive on CPUs without AVX-512 (e.g. AVX2-only AMD EPYC): the call fails with "could not
create a primitive descriptor for the LSTM forward propagation primitive".

:class:`AutocastLSTM` is an ``nn.LSTM`` (same parameters, same state-dict keys) whose forward, inside
autocast, checks once per (device type, autocast dtype) whether that device runs the LSTM in the
autocast dtype (:func:`lstm_runs_in_autocast_dtype`, a one-time probe on a 2-step LSTM). Where it
does, the LSTM runs in the autocast dtype, as plain ``nn.LSTM`` does (CUDA keeps cuDNN's bf16 LSTM).
Where it does not, autocast is switched off for the LSTM only and it runs in its parameters' dtype
(float32 for an fp32 model): the "float32 fallback". Either way **the output under autocast is in the
autocast dtype** (the fallback casts its result back), so the rest of the graph sees the same dtypes
on every CPU. Outside autocast nothing changes.

The environment variable ``HF_HDCID_LSTM_AUTOCAST`` overrides the decision: ``auto`` (default, the
probe), ``float32`` (always the fallback: what an AVX2-only CPU does, on any machine) or ``native``
(never the fallback).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

LSTM_AUTOCAST_ENV = "HF_HDCID_LSTM_AUTOCAST"
LSTM_AUTOCAST_MODES = ("auto", "float32", "native")


def lstm_autocast_mode() -> str:
    """The value of ``HF_HDCID_LSTM_AUTOCAST`` ("auto" when unset); ValueError for anything else."""
    mode = os.environ.get(LSTM_AUTOCAST_ENV, "auto").strip().lower() or "auto"
    if mode not in LSTM_AUTOCAST_MODES:
        raise ValueError(f"{LSTM_AUTOCAST_ENV}: expected one of {LSTM_AUTOCAST_MODES}, got {mode!r}")
    return mode


@functools.lru_cache(maxsize=None)
def _probe(device: str, dtype: torch.dtype) -> bool:
    """True when a bidirectional 2-layer LSTM runs forward and backward under autocast(dtype) on
    ``device`` (run once per process and key; the kernels do not change while a process runs)."""
    try:
        with torch.enable_grad():
            lstm = nn.LSTM(4, 2, num_layers=2, batch_first=True, bidirectional=True).to(device)
            x = torch.zeros(1, 2, 4, device=device, requires_grad=True)
            with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
                out = lstm(x)[0]
            out.float().sum().backward()
        return True
    except RuntimeError:
        return False


def lstm_runs_in_autocast_dtype(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether an LSTM on ``device`` runs in ``dtype`` under autocast here (decided once; see module
    docstring for ``HF_HDCID_LSTM_AUTOCAST``)."""
    mode = lstm_autocast_mode()
    if mode != "auto":
        return mode == "native"
    device = torch.device(device)
    key = device.type if device.index is None else f"{device.type}:{device.index}"
    return _probe(key, dtype)


class AutocastLSTM(nn.LSTM):
    """``nn.LSTM`` that falls back to its parameters' dtype under autocast where the device has no
    reduced-precision LSTM kernel; under autocast the output is always in the autocast dtype."""

    def forward(self, input: torch.Tensor, hx=None):
        device_type = input.device.type
        if not torch.is_autocast_enabled(device_type):
            return super().forward(input, hx)
        dtype = torch.get_autocast_dtype(device_type)
        if lstm_runs_in_autocast_dtype(input.device, dtype):
            return super().forward(input, hx)
        compute = self.weight_ih_l0.dtype
        with torch.autocast(device_type=device_type, enabled=False):
            if hx is not None:
                hx = tuple(h.to(compute) for h in hx)
            output, (h, c) = super().forward(input.to(compute), hx)
        return output.to(dtype), (h.to(dtype), c.to(dtype))


__all__ = ["AutocastLSTM", "lstm_runs_in_autocast_dtype", "lstm_autocast_mode", "LSTM_AUTOCAST_ENV"]
