"""The training log: one JSONL line per ``log_every`` optimiser steps (means over processes) and the
same scalars to the Accelerate trackers. The scalars of a step stay on the device until a logged step,
where they are stacked and copied to the host once (no host sync on the steps in between)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

LOG_FILE = "train_log.jsonl"


def step_scalars(result) -> tuple[list[str], torch.Tensor]:
    """(names, one float64 device tensor) of every scalar of a :class:`~hf_hdcid.training.step.StepResult`:
    the loss, every named term and diagnostic, the last CLUB loss."""
    out = result.output
    device = out.loss.device
    names, values = ["loss"], [out.loss.detach()]
    for terms in (out.losses, out.diagnostics):
        for name, value in terms.items():
            t = torch.as_tensor(value, device=device).detach()
            if t.numel() == 1:
                names.append(name)
                values.append(t)
    if result.club_loss is not None:
        names.append("club_loss")
        values.append(result.club_loss.detach())
    return names, torch.stack([v.reshape(()).to(torch.float64) for v in values])


def truncate_log(log_path: Path, keep_until_step: int | None) -> None:
    """Keep the lines of steps <= ``keep_until_step`` (a resumed run; None: start a new log)."""
    kept = []
    if log_path.exists() and keep_until_step is not None:
        for line in log_path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= keep_until_step:
                    kept.append(line)
            except json.JSONDecodeError:
                pass
    log_path.write_text("".join(line + "\n" for line in kept))


def log_step(run, result, *, step: int, epoch: int, batch: int, lr: float, elapsed: float, log_path: Path,
             progress=None) -> dict:
    """Reduce (mean over processes), copy once, write the JSONL line and the trackers; returns the record.
    FloatingPointError (naming the step) when the loss is NaN / inf outside fp16 (where the loss scaler
    skips such steps itself)."""
    acc = run.accelerator
    names, flat = step_scalars(result)
    if run.world > 1:  # every rank takes part
        flat = acc.reduce(flat, reduction="mean")
    record = {"step": step, "epoch": epoch, "batch": batch}
    record.update(zip(names, flat.cpu().tolist()))  # the one host copy of this step
    record["lr"] = lr  # the rate of this step's update
    record["club_lr"] = run.club_optimizer.param_groups[0]["lr"]
    record["samples_per_s"] = run.global_batch / max(elapsed, 1e-9)
    if result.step_skipped:
        record["step_skipped"] = 1.0
    if not math.isfinite(record["loss"]) and run.cfg.mixed_precision != "fp16":
        raise FloatingPointError(f"the loss is {record['loss']} at step {step} (epoch {epoch}, batch {batch}): the "
                                 "inputs hold NaN / inf values or training diverged (try a lower lr)")
    if acc.is_main_process:
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
    if run.trackers:
        acc.log({k: v for k, v in record.items() if k != "step"}, step=step)
    if progress is not None:
        progress.set_postfix(epoch=epoch, loss=f"{record['loss']:.4f}")
    return record


__all__ = ["LOG_FILE", "step_scalars", "truncate_log", "log_step"]
