"""Hostile-user sweep (issue 19): bad inputs and damaged files through the real command lines.

Builds a tiny model folder and tiny synthetic shards in a scratch folder, then runs each case as a
subprocess (``hf-hdcid ...`` or ``scripts/pretrain.py ...``) and classifies the outcome:

* ``clear``: non-zero exit, no traceback, one ``error:`` line (what every case here should give);
* ``traceback``: a Python traceback reached the user;
* ``accepted``: exit 0 although the input is bad (silently accepted);
* ``unclear``: non-zero exit without a traceback but not one error line.

Prints one JSON line per case and a summary; ``--out FILE`` writes them as JSONL.

    python benchmarks/reliability.py --out benchmarks/results/issue19_reliability.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_TOKEN": "hf_fake_token"}
CLI = [sys.executable, "-m", "hf_hdcid.cli"]
PRETRAIN = [sys.executable, str(REPO / "scripts" / "pretrain.py")]


def classify(result: subprocess.CompletedProcess) -> str:
    if "Traceback (most recent call last)" in result.stderr:
        return "traceback"
    if result.returncode == 0:
        return "accepted"
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    return "clear" if len(errors) == 1 else "unclear"


def copy_model(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    if config_changes:
        config = json.loads((dst / "config.json").read_text())
        config.update(config_changes)
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def build_cases(work: Path, model: Path, shards: Path) -> list[tuple[str, list[str]]]:
    hidden = json.loads((model / "config.json").read_text())["hidden_size"]
    book = json.loads((model / "config.json").read_text())["codebook_size"]
    foreign = copy_model(model, work / "foreign")
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(8, 4)}, foreign / "model.safetensors")
    truncated = copy_model(model, work / "truncated")
    os.truncate(truncated / "model.safetensors", (truncated / "model.safetensors").stat().st_size - 100)
    wider = copy_model(model, work / "wider", hidden_size=2 * hidden)
    bigger_book = copy_model(model, work / "bigger_book", codebook_size=book + 1)
    foo = copy_model(model, work / "foo", model_type="foo")
    bert = work / "bert_folder"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    broken_json = copy_model(model, work / "broken_json")
    (broken_json / "config.json").write_text("{not json")
    other = work / "other_folder"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    a_file = work / "a_file"
    a_file.write_text("x")
    no_tok = work / "no_tokenizer"
    no_tok.mkdir()
    (no_tok / "config.json").write_text("{}")
    whole_pt, cut_pt = work / "whole.pt", work / "cut.pt"
    torch.save({"Encoder_parameters": {"w": torch.zeros(64, 64)}}, whole_pt)
    cut_pt.write_bytes(whole_pt.read_bytes()[: whole_pt.stat().st_size // 2])
    bad_manifest = work / "bad_manifest"
    shutil.copytree(shards, bad_manifest)
    (bad_manifest / "hdcid_shards.json").write_text("{broken")
    ev = ["--task", "synthetic_ave", "--direction", "v2a", "--data", str(shards)]
    train = ["--data", str(shards), "--epochs", "1", "--batch-size", "8", "--no-progress", "--report-to", "none",
             "--no-plot"]
    return [
        ("toc: foreign weights", [*CLI, "toc", str(foreign), "--channels", "4"]),
        ("toc: truncated weights", [*CLI, "toc", str(truncated), "--channels", "4"]),
        ("toc: hidden_size edited", [*CLI, "toc", str(wider), "--channels", "4"]),
        ("toc: model_type foo", [*CLI, "toc", str(foo), "--channels", "4"]),
        ("toc: non-HDCID folder", [*CLI, "toc", str(bert), "--channels", "4"]),
        ("toc: malformed config.json", [*CLI, "toc", str(broken_json), "--channels", "4"]),
        ("toc: missing local path", [*CLI, "toc", "./no/such/model", "--channels", "4"]),
        ("toc: --channels 999", [*CLI, "toc", str(model), "--channels", "999"]),
        ("toc: --channels 0", [*CLI, "toc", str(model), "--channels", "0"]),
        ("toc: --out another existing folder", [*CLI, "toc", str(model), "--channels", "4", "--out", str(other)]),
        ("toc: --out another folder --overwrite", [*CLI, "toc", str(model), "--channels", "4", "--out", str(other),
                                                   "--overwrite"]),
        ("evaluate: foreign weights", [*CLI, "evaluate", str(foreign), *ev]),
        ("evaluate: codebook_size edited", [*CLI, "evaluate", str(bigger_book), *ev]),
        ("evaluate: missing local path", [*CLI, "evaluate", "./no/such/model", *ev]),
        ("evaluate: --lr inf", [*CLI, "evaluate", str(model), *ev, "--lr", "inf"]),
        ("evaluate: --lr nan", [*CLI, "evaluate", str(model), *ev, "--lr", "nan"]),
        ("evaluate: --lr -1", [*CLI, "evaluate", str(model), *ev, "--lr", "-1"]),
        ("evaluate: --out is a file", [*CLI, "evaluate", str(model), *ev, "--out", str(a_file)]),
        ("evaluate: --toc-num-channels 999", [*CLI, "evaluate", str(model), *ev, "--toc-num-channels", "999"]),
        ("card: foreign weights", [*CLI, "card", str(foreign)]),
        ("card: truncated weights", [*CLI, "card", str(truncated)]),
        ("push: foreign weights", [*CLI, "push", str(foreign), "org/name"]),
        ("push: truncated weights", [*CLI, "push", str(truncated), "org/name"]),
        ("push: refused network (online mode, closed port)", ["env", "HF_HUB_OFFLINE=0", *CLI, "push",
                                                              str(copy_model(model, work / "push_ok")), "org/name"]),
        ("convert-features: unknown --path key", [*CLI, "convert-features", "ave", str(work / "o1"), "--path",
                                                  "rooot=/x"]),
        ("convert-features: no --path", [*CLI, "convert-features", "avvp", str(work / "o2")]),
        ("make-synthetic: --text-model without tokenizer", [*CLI, "make-synthetic", str(work / "syn"),
                                                            "--text-model", str(no_tok)]),
        ("make-synthetic: existing folder", [*CLI, "make-synthetic", str(shards), "--clips", "8"]),
        ("pretrain: --toc-num-channels 999", [*PRETRAIN, *train, "--output-dir", str(work / "r1"),
                                              "--toc-num-channels", "999"]),
        ("pretrain: fsq with --toc-num-channels 4", [*PRETRAIN, *train, "--output-dir", str(work / "r2"),
                                                     "--toc-num-channels", "4", "--model-config",
                                                     '{"quantizer": "fsq", "use_cmcm": false}']),
        ("pretrain: malformed hdcid_shards.json", [*PRETRAIN, *train[2:], "--data", str(bad_manifest),
                                                   "--output-dir", str(work / "r3")]),
        ("pretrain: --batch-size 0", [*PRETRAIN, *train[:4], "--batch-size", "0", "--output-dir", str(work / "r4")]),
        ("convert-original: truncated .pt", [*CLI, "convert-original", str(cut_pt), str(work / "o3")]),
        ("convert-original: not a checkpoint", [*CLI, "convert-original", str(a_file), str(work / "o4")]),
        ("demo: --output-dir is a file", [*CLI, "demo", "--output-dir", str(a_file)]),
        ("demo: --epochs 0", [*CLI, "demo", "--output-dir", str(work / "d1"), "--epochs", "0"]),
        ("demo: --lr nan", [*CLI, "demo", "--output-dir", str(work / "d2"), "--lr", "nan"]),
    ]


def locked_and_damaged_cases(work: Path, shards: Path) -> list[tuple[str, list[str], object]]:
    """Cases that need a live holder or a damaged checkpoint: (name, command, setup -> cleanup)."""
    train = ["--data", str(shards), "--epochs", "1", "--batch-size", "8", "--no-progress", "--report-to", "none",
             "--no-plot", "--toc-num-channels", "0"]
    locked, locked_shards = work / "locked_run", work / "locked_shards"

    def hold(folder=locked):
        code = ("import sys, time; from hf_hdcid.folders import exclusive_folder\n"
                "with exclusive_folder(sys.argv[1], 'holder'):\n    print('locked', flush=True); time.sleep(600)\n")
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
        proc.stdout.readline()
        return lambda: (proc.kill(), proc.wait())

    damaged = work / "damaged_run"

    def damage():
        subprocess.run([*PRETRAIN, *train, "--output-dir", str(damaged)], env=ENV, capture_output=True, check=True)
        latest = sorted((damaged / "checkpoints").iterdir())[-1]
        (latest / "random_states_0.pkl").write_bytes(b"garbage")
        return lambda: None

    return [
        ("demo: output dir held by another run", [*CLI, "demo", "--output-dir", str(work / "locked_demo")],
         lambda: hold(work / "locked_demo")),
        ("pretrain: output dir held by another run", [*PRETRAIN, *train, "--output-dir", str(locked)], hold),
        ("shards: make-synthetic into a folder being written", [*CLI, "make-synthetic", str(locked_shards),
                                                                "--clips", "8"], lambda: hold(locked_shards)),
        ("pretrain: resume from a checkpoint with a corrupt RNG state",
         [*PRETRAIN, *train, "--output-dir", str(damaged), "--resume-from-checkpoint", "latest"], damage),
    ]


def _mount_tmpfs(folder: Path, size_bytes: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    size_kb = max(64, size_bytes // 1024)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def _left_on(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "lost+found")


def disk_full_cases(work: Path, model: Path, shards: Path) -> list[tuple[str, list[str], object]]:
    """A real full disk: a small tmpfs (needs root and ``mount``; skipped otherwise). Each setup mounts it,
    the cleanup records what was left on it (``left``) and unmounts it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return []
    train = ["--data", str(shards), "--epochs", "2", "--batch-size", "8", "--no-progress", "--report-to", "none",
             "--no-plot", "--toc-num-channels", "0"]
    reference = work / "disk_reference"
    subprocess.run([*PRETRAIN, *train, "--output-dir", str(reference)], env=ENV, capture_output=True, check=True)
    step = sorted((reference / "checkpoints").iterdir())[0]
    checkpoint_bytes = sum(f.stat().st_size for f in step.rglob("*") if f.is_file())
    model_bytes = (model / "model.safetensors").stat().st_size
    left: dict[str, list[str]] = {}

    def mounted(name: str, size: int):
        folder = work / f"full_{name}"

        def setup():
            if not _mount_tmpfs(folder, size):
                raise RuntimeError(f"could not mount a tmpfs on {folder}")

            def cleanup():
                left[name] = _left_on(folder)
                subprocess.run(["umount", str(folder)], check=True)
            return cleanup
        return folder, setup

    run_fs, run_setup = mounted("pretrain", int(1.5 * checkpoint_bytes) + 64 * 1024)
    toc_fs, toc_setup = mounted("toc", model_bytes // 2)
    syn_fs, syn_setup = mounted("make_synthetic", 256 * 1024)
    cases = [
        ("pretrain: disk full during the second checkpoint (tmpfs)",
         [*PRETRAIN, *train, "--output-dir", str(run_fs / "run")], run_setup),
        ("toc: disk full while writing --out (tmpfs)",
         [*CLI, "toc", str(model), "--channels", "4", "--out", str(toc_fs / "toc")], toc_setup),
        ("make-synthetic: disk full (tmpfs)", [*CLI, "make-synthetic", str(syn_fs / "syn"), "--clips", "64"],
         syn_setup),
    ]
    return [(name, command, setup, left, key) for (name, command, setup), key in
            zip(cases, ("pretrain", "toc", "make_synthetic"))]


def kill_cases(work: Path, shards: Path, kills: int) -> list[dict]:
    """SIGKILL a pretraining run (a checkpoint every 2 steps) at ``kills`` moments spread over its run time,
    then check what a user finds: every ``step_*`` checkpoint verifies, ``model/`` is absent or loads
    checked, no lock blocks the next run, and ``--resume-from-checkpoint latest`` finishes with weights
    bit-identical to an uninterrupted run. Outcome ``held`` or ``broken`` (with the reason)."""
    import signal

    from safetensors.torch import load_file

    from hf_hdcid.loading import check_model_folder
    from hf_hdcid.training.checkpoints import list_checkpoints, verify_checkpoint

    train = ["--data", str(shards), "--epochs", "6", "--batch-size", "8", "--no-progress", "--report-to", "none",
             "--no-plot", "--toc-num-channels", "0", "--save-every-steps", "2"]
    reference = work / "kill_reference"
    started = time.perf_counter()
    subprocess.run([*PRETRAIN, *train, "--output-dir", str(reference)], env=ENV, capture_output=True, check=True)
    duration = time.perf_counter() - started
    want = load_file(reference / "model" / "model.safetensors")
    rows = []
    for i in range(kills):
        # the first ~40 % of a run is start-up (imports, data, model): spread the kills over the training
        out, delay = work / f"killed_{i}", duration * (0.45 + 0.52 * i / max(1, kills - 1))
        proc = subprocess.Popen([*PRETRAIN, *train, "--output-dir", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished_before_kill = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        problems = []
        steps = list_checkpoints(out)
        for step in steps:
            try:
                verify_checkpoint(step, 1)
            except ValueError as err:
                problems.append(str(err))
        if (out / "model").exists():
            try:
                check_model_folder(out / "model")
            except (ValueError, OSError) as err:
                problems.append(f"model/: {err}")
        resumed = subprocess.run([*PRETRAIN, *train, "--output-dir", str(out), "--resume-from-checkpoint", "latest"],
                                 env=ENV, capture_output=True, text=True, timeout=600)
        if resumed.returncode != 0:
            problems.append(f"resume exit {resumed.returncode}: {resumed.stderr.strip().splitlines()[-1:]}")
        else:
            got = load_file(out / "model" / "model.safetensors")
            if got.keys() != want.keys() or not all(torch.equal(got[k], want[k]) for k in want):
                problems.append("resumed weights differ from the uninterrupted run")
        row = {"case": f"SIGKILL {i + 1}/{kills} at {delay:.1f} s of {duration:.1f} s",
               "outcome": "broken" if problems else "held", "checkpoints_at_kill": [p.name for p in steps],
               "finished_before_kill": finished_before_kill, "problems": problems}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="JSONL file of the outcomes")
    parser.add_argument("--kills", type=int, default=8, help="SIGKILL moments during pretraining (0: none)")
    args = parser.parse_args()
    from hf_hdcid import HDCIDConfig, HDCIDForPreTraining

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        model = work / "model"
        HDCIDForPreTraining(HDCIDConfig.tiny()).save_pretrained(model)
        shards = work / "shards"
        subprocess.run([*CLI, "make-synthetic", str(shards), "--clips", "32", "--downstream-clips", "16"],
                       env=ENV, check=True, capture_output=True)
        cases = ([(n, c, None, None, None) for n, c in build_cases(work, model, shards)]
                 + [(n, c, s, None, None) for n, c, s in locked_and_damaged_cases(work, shards)]
                 + disk_full_cases(work, model, shards))
        for name, command, setup, left, key in cases:
            cleanup = setup() if setup is not None else None
            started = time.perf_counter()
            try:
                result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
            finally:
                if cleanup is not None:
                    cleanup()
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            row = {"case": name, "outcome": classify(result), "exit": result.returncode,
                   "seconds": round(time.perf_counter() - started, 1), "message": lines[-1][:300] if lines else ""}
            if left is not None:  # what the full disk holds afterwards: no partial folder may be among it
                row["left_on_disk"] = left.get(key, [])
            rows.append(row)
            print(json.dumps(row), flush=True)
        kills = kill_cases(work, shards, args.kills) if args.kills else []
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("clear", "traceback", "accepted", "unclear")}
    print(json.dumps({"cases": len(rows), **counts, "kills": len(kills),
                      "kills_held": sum(r["outcome"] == "held" for r in kills)}))
    rows += kills
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
