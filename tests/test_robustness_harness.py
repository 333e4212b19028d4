"""benchmarks/robustness.py: the sweep's summary applies the issue-14 target rule exactly."""

import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("robustness", Path(__file__).parents[1] / "benchmarks" / "robustness.py")
robustness = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(robustness)


def record(model, seed, trained, ave, av=0.2):
    return {"setting": "bundled", "model": model, "seed": seed, "trained": trained, "tag": "t",
            "agreement": {"audio-video": [av], "audio-text": [0.1]}, "ave": ave, "avvp": 0.2}


def rows(table):
    return [line for line in table.splitlines() if line.startswith("| bundled")]


@pytest.mark.parametrize("trained_ave, ceiling, verdict", [
    (0.30, 0.50, "yes"),  # 30 % >= 2 x 10 % chance and >= 9 % floor + 8
    (0.19, 0.50, "no"),   # above the floor + 8 (17 %) but below 2 x chance (20 %)
    (0.16, 0.50, "no"),   # below 2x chance (20 %)
    (0.30, 0.20, "n/a (ceiling < 25 %)"),
])
def test_target_rule(trained_ave, ceiling, verdict):
    records = [record("dcid", s, True, trained_ave) for s in range(3)]
    records += [record("dcid", s, False, 0.09, av=0.05) for s in range(3)]
    table = robustness.summarise(records, {"bundled": {"audio": ceiling, "video": 0.1}}, ["bundled"], "t")
    (row,) = rows(table)
    assert row.endswith(f"| {verdict} |")
    assert f"| {trained_ave * 100:.1f} ± 0.0 (9.0) |" in row and "| 0.200 ± 0.000 (0.050) |" in row


def test_floor_gap_rule():
    # chance 10 %: 21 % passes 2x chance; floor 14 % + 8 = 22 % > 21 %: fails on the floor rule
    records = [record("hdcid", s, True, 0.21) for s in range(3)] + [record("hdcid", s, False, 0.14) for s in range(3)]
    (row,) = rows(robustness.summarise(records, {"bundled": {"audio": 0.6, "video": 0.5}}, ["bundled"], "t"))
    assert row.endswith("| no |") and "H-DCID" in row


def test_linear_probe_separates_separable_classes_and_not_random_labels():
    import torch

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 6, generator=g) * 5
    y = torch.arange(400) % 4
    x = centres[y] + torch.randn(400, 6, generator=g) * 0.05
    y_random = torch.randint(0, 4, (400,), generator=g)
    (separable,) = robustness.linear_probe_accuracy(x[:300], y[:300], [(x[300:], y[300:])], epochs=100)
    (random_labels,) = robustness.linear_probe_accuracy(x[:300], y_random[:300], [(x[300:], y_random[300:])],
                                                        epochs=100)
    assert separable == 1.0 and random_labels < 0.45
