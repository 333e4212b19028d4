"""One downstream run of any task, chosen by the task's kind: the single entry point of
``hf-hdcid evaluate`` (one run) and :func:`hf_hdcid.downstream.grid.run_grid` (a grid).

:data:`RUNNERS` maps a :class:`~hf_hdcid.downstream.tasks.TaskSpec` kind to its runner. Every runner
takes ``(model, task, direction, data, test_data=None, *, protocol, toc, toc_num_channels, layers,
seeds, epochs, batch_size, lr, out_dir, cache, model_name)`` and returns a run record of the shape of
:func:`hf_hdcid.downstream.evaluate_downstream`'s (the "Run records" of the issue-18 contract); a
runner ignores the settings its kind has no use for and says so in its docstring. Adding a kind: a
``TaskSpec`` in :data:`hf_hdcid.downstream.tasks.TASKS` with its ``directions`` and one entry here.
"""

from __future__ import annotations

from .runner import evaluate_downstream
from .tasks import PROBE_KINDS, get_direction, get_task, plan_runs


def _run_probe(model, task, direction, data, test_data=None, **settings) -> dict:
    get_direction(direction, task)  # the task's own directions
    return evaluate_downstream(model, task, direction, data, test_data, **settings)


def _run_retrieval(model, task, direction, data, test_data=None, **settings) -> dict:
    from .retrieval import run_retrieval

    return run_retrieval(model, task, direction, data, test_data, **settings)


def _run_segmentation(model, task, direction, data, test_data=None, *, cache=None, backbone=None,
                      **settings) -> dict:
    """The segmenter trained and tested on ``data`` (``test_data`` and the code ``cache`` are not used:
    the segmenter reads its own frames and queries)."""
    from .segmentation import evaluate_segmentation

    return evaluate_segmentation(model, task, direction, data, backbone=backbone, **settings)


#: task kind -> runner
RUNNERS = {**{kind: _run_probe for kind in PROBE_KINDS}, "retrieval": _run_retrieval,
           "segmentation": _run_segmentation}
#: kinds whose runners take a ``backbone``
USES_BACKBONE = {"segmentation"}

#: the test-side data is read by probe tasks only (two-dataset tasks need it, the others test on it)
READS_TEST_DATA = set(PROBE_KINDS)


def check_runs(tasks, directions=None, test_data=None, backbone=None) -> list[tuple[str, str]]:
    """The (task, direction) pairs to run (:func:`hf_hdcid.downstream.tasks.plan_runs`), checked before
    any work: every task's kind has a runner, and a ``test_data`` is read by at least one task."""
    pairs = plan_runs(tasks, directions)
    kinds = {get_task(t).kind for t, _ in pairs}
    for kind in kinds:
        if kind not in RUNNERS:
            raise ValueError(f"task: kind {kind!r} has no runner (runners: {sorted(RUNNERS)})")
    if backbone is not None and not kinds & USES_BACKBONE:
        raise ValueError(f"backbone: only the segmentation tasks use a visual backbone, got {backbone!r} for tasks "
                         f"{sorted({t for t, _ in pairs})}")
    if test_data is not None and not kinds & READS_TEST_DATA:
        raise ValueError(f"test_data: tasks {sorted({t for t, _ in pairs})} read only data (no probe is trained), "
                         f"got test_data {str(test_data)!r}")
    return pairs


def run_task(model, task: str, direction: str, data, test_data=None, *, protocol: str = "heldout", toc: bool = False,
             toc_num_channels: int | None = None, layers="both", seeds=(0,), epochs=None, batch_size=None, lr=None,
             out_dir=None, cache=None, model_name: str | None = None, backbone: str | None = None) -> dict:
    """Run ``task`` in ``direction`` with the runner of its kind (:data:`RUNNERS`) -> its run record.
    ``backbone``: segmentation tasks only, the visual backbone's weights (Hub id or folder; "random": a
    random backbone of the task's architecture; None: the task's default).
    ValueError before any work for an unknown task or a direction the task does not have (a grid
    checks its ``test_data`` once, :func:`check_runs`: a runner of a kind that reads none ignores it)."""
    spec = get_task(task)
    (_, direction), = check_runs([task], [direction])  # "va" / "av" -> "v2a" / "a2v"
    extra = {"backbone": backbone} if spec.kind in USES_BACKBONE else {}  # a grid's backbone is for these only
    return RUNNERS[spec.kind](model, task, direction, data, test_data, protocol=protocol, toc=toc,
                              toc_num_channels=toc_num_channels, layers=layers, seeds=seeds, epochs=epochs,
                              batch_size=batch_size, lr=lr, out_dir=out_dir, cache=cache, model_name=model_name,
                              **extra)


__all__ = ["RUNNERS", "run_task", "check_runs"]
