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
        ("evaluate: --toc-channels 999", [*CLI, "evaluate", str(model), *ev, "--toc-channels", "999"]),
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
        ("pretrain: --toc-channels 999", [*PRETRAIN, *train, "--output-dir", str(work / "r1"),
                                          "--toc-channels", "999"]),
        ("pretrain: fsq with --toc-channels 4", [*PRETRAIN, *train, "--output-dir", str(work / "r2"),
                                                 "--toc-channels", "4", "--model-config",
                                                 '{"quantizer": "fsq", "use_cmcm": false}']),
        ("pretrain: malformed hdcid_shards.json", [*PRETRAIN, *train[2:], "--data", str(bad_manifest),
                                                   "--output-dir", str(work / "r3")]),
        ("pretrain: --batch-size 0", [*PRETRAIN, *train[:4], "--batch-size", "0", "--output-dir", str(work / "r4")]),
    ]


def locked_and_damaged_cases(work: Path, shards: Path) -> list[tuple[str, list[str], object]]:
    """Cases that need a live holder or a damaged checkpoint: (name, command, setup -> cleanup)."""
    train = ["--data", str(shards), "--epochs", "1", "--batch-size", "8", "--no-progress", "--report-to", "none",
             "--no-plot", "--toc-channels", "0"]
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
        ("pretrain: output dir held by another run", [*PRETRAIN, *train, "--output-dir", str(locked)], hold),
        ("shards: make-synthetic into a folder being written", [*CLI, "make-synthetic", str(locked_shards),
                                                                "--clips", "8"], lambda: hold(locked_shards)),
        ("pretrain: resume from a checkpoint with a corrupt RNG state",
         [*PRETRAIN, *train, "--output-dir", str(damaged), "--resume-from-checkpoint", "latest"], damage),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="JSONL file of the outcomes")
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
        cases = [(n, c, None) for n, c in build_cases(work, model, shards)] + locked_and_damaged_cases(work, shards)
        for name, command, setup in cases:
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
            rows.append(row)
            print(json.dumps(row), flush=True)
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("clear", "traceback", "accepted", "unclear")}
    print(json.dumps({"cases": len(rows), **counts}))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
