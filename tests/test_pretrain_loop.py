"""The Accelerate pretraining loop (hf_hdcid.training.loop, scripts/pretrain.py) on tiny synthetic shards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.training.loop import PretrainConfig, PretrainConfigError, clip_groups, list_checkpoints, pretrain
from hf_hdcid.training.config import parse_command_line

from conftest import free_port, minilm_synthetic_shards, reset_accelerate_state

REPO = Path(__file__).resolve().parent.parent
CLIPS = 48
BATCH = 8
STEPS_PER_EPOCH = CLIPS // BATCH


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return minilm_synthetic_shards(tmp_path_factory.mktemp("pretrain_data") / "shards", {"pretrain": CLIPS})


def settings(shards, output_dir, **overrides) -> PretrainConfig:
    # warm start at epoch 1: the second epoch trains (and resumes) both layers
    values = dict(data=str(shards), output_dir=str(output_dir), epochs=2, batch_size=BATCH, club_steps=1,
                  save_every_steps=100, progress=False, model_config={"warm_start_epoch": 1, "dropout": 0.1},
                  report_to="none", plot=False)
    values.update(overrides)
    return PretrainConfig(**values)


def read_log(output_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "train_log.jsonl").read_text().splitlines()]


def test_single_process_run_writes_model_log_and_checkpoints(shards, tmp_path):
    out = tmp_path / "run"
    model_dir = pretrain(settings(shards, out, save_every_steps=4, report_to="tensorboard", plot=True,
                                  save_total_limit=0))
    assert model_dir == out / "model"
    model = HDCIDForPreTraining.from_pretrained(model_dir)
    hidden = model.config.hidden_size
    assert len(model.config.toc_channels) == model.config.num_layers
    assert all(len(c) == hidden // 2 for c in model.config.toc_channels)

    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [r["epoch"] for r in log] == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
    first, last = log[0], log[-1]
    for key in ("loss", "recon/audio/layer1", "commit/video/layer1", "mi/text/layer1", "cpc/layer1",
                "total/layer1", "perplexity/audio/layer1", "active_codes/layer1", "equal_num/layer1",
                "club_loss", "lr", "club_lr", "samples_per_s"):
        assert isinstance(first[key], float) and first[key] == first[key], key
    assert "total/layer2" not in first and "total/layer2" in last  # warm start at epoch 1
    assert first["lr"] == 4e-4 and first["club_lr"] == 1e-3

    names = [p.name for p in list_checkpoints(out)]
    assert names == ["step_0000004", "step_0000006", "step_0000008", "step_0000012"]  # every 4 + epoch ends
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    state = json.loads((out / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())
    assert state == {"global_step": 4, "epoch": 0, "batches_in_epoch": 4}
    assert json.loads((out / "checkpoints" / "step_0000006" / "trainer_state.json").read_text())["epoch"] == 1

    # the same scalars went to TensorBoard
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for key in ("loss", "total/layer1", "active_codes/layer1", "lr"):
        points = events.Scalars(key)
        assert [p.step for p in points] == [r["step"] for r in log], key
        assert [p.value for p in points] == pytest.approx([r[key] for r in log], rel=1e-6), key

    # the model folder: training record, loss curves, model card
    info = json.loads((model_dir / "training_info.json").read_text())
    assert (info["steps"], info["epochs"], info["num_processes"], info["global_batch_size"]) == (12, 2, 1, BATCH)
    assert info["data"]["num_clips"] == CLIPS and info["data"]["modalities"] == ["audio", "video", "text"]
    assert info["final_metrics"] == log[-1] and info["pretrain_config"]["batch_size"] == BATCH
    assert info["train_time_s"] > 0
    for folder in (out, model_dir):
        png = (folder / "loss_curves.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 20_000
    card = (model_dir / "README.md").read_text()
    assert "H-DCID" in card and "loss_curves.png" in card
    # the card is written last, after TOC: the figure and summary agree with the config and the card
    summary = json.loads((model_dir / "toc_summary.json").read_text())
    assert summary["channels"] == model.config.toc_channels
    assert (model_dir / "toc_cosine.png").read_bytes().startswith(b"\x89PNG")
    assert "![TOC heat map](toc_cosine.png)" in card
    assert f"| 1 | {hidden // 2} of {hidden} | " + ", ".join(map(str, summary["channels"][0])) + " |" in card


def test_push_to_hub_uploads_the_final_model_with_its_card(shards, tmp_path, hub, monkeypatch):
    from hf_hdcid import HDCIDModel

    monkeypatch.setenv("HF_TOKEN", "hf_fake")  # the fake Hub accepts any token
    out = tmp_path / "pushed"
    model_dir = pretrain(settings(shards, out, epochs=1, plot=True, push_to_hub=True,
                                  hub_model_id="hdcid-org/tiny-pretrained"))
    assert len(hub.commits) == 1
    paths = hub.commits[0].paths
    assert {"README.md", "config.json", "model.safetensors", "loss_curves.png", "training_info.json",
            "modeling_hdcid.py"} <= set(paths)
    assert not [p for p in paths if p.startswith("checkpoints") or p.endswith(".jsonl")]
    card = (hub.tree("hdcid-org/tiny-pretrained") / "README.md").read_text()
    assert 'from_pretrained("hdcid-org/tiny-pretrained"' in card
    pulled = HDCIDModel.from_pretrained("hdcid-org/tiny-pretrained")  # offline, from the cache the fake filled
    saved = load_file(model_dir / "model.safetensors")
    state = pulled.state_dict()
    assert [k for k, v in state.items() if not torch.equal(v, saved["hdcid." + k])] == []


@pytest.mark.parametrize("lstm_mode", ["auto", "float32"])  # float32: the AVX2-only CPU path, forced
def test_bf16_mixed_precision_keeps_fp32_weights_and_codebooks(shards, tmp_path, monkeypatch, lstm_mode):
    monkeypatch.setenv("HF_HDCID_LSTM_AUTOCAST", lstm_mode)
    model_dir = pretrain(settings(shards, tmp_path / "bf16", epochs=1, mixed_precision="bf16"))
    log = read_log(tmp_path / "bf16")
    assert len(log) == STEPS_PER_EPOCH and all(r["loss"] == r["loss"] for r in log)  # finite, logged
    saved = load_file(model_dir / "model.safetensors")
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}
    reset_accelerate_state()  # accelerate keeps one precision per process
    fp32 = load_file(pretrain(settings(shards, tmp_path / "fp32", epochs=1)) / "model.safetensors")
    key = "hdcid.layers.0.codebook.embed"  # autocast really changed the arithmetic
    assert not torch.equal(saved[key], fp32[key])


def _lr_of(schedule: str, step: int, warmup: int = 2, total: int = 2 * STEPS_PER_EPOCH, base: float = 4e-4) -> float:
    """Rate used by optimiser step ``step`` (1-based), computed by hand."""
    import math

    s = step - 1
    if schedule == "constant":
        return base
    if s < warmup:
        return base * s / warmup
    progress = (s - warmup) / (total - warmup)
    return base * (0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_lr_schedules_follow_their_formula(shards, tmp_path, schedule):
    pretrain(settings(shards, tmp_path / schedule, lr_scheduler=schedule, warmup_steps=2, club_steps=0))
    log = read_log(tmp_path / schedule)
    assert [r["lr"] for r in log] == pytest.approx([_lr_of(schedule, r["step"]) for r in log], abs=1e-12)
    assert log[0]["lr"] == 0.0 and log[2]["lr"] == pytest.approx(4e-4)


def test_multistep_schedule_halves_the_rate_at_each_milestone_epoch(shards, tmp_path):
    pretrain(settings(shards, tmp_path / "ms", lr_scheduler="multistep", lr_milestones=[1], lr_gamma=0.5,
                      club_steps=0))
    assert [r["lr"] for r in read_log(tmp_path / "ms")] == [4e-4] * STEPS_PER_EPOCH + [2e-4] * STEPS_PER_EPOCH


def test_per_club_step_encoder_passes_run_the_encoder_club_steps_plus_one_times(shards, tmp_path, monkeypatch):
    calls = []
    original = HDCIDForPreTraining.extract_features

    def counting(self, batch, epoch=0):
        calls.append(torch.is_grad_enabled())
        return original(self, batch, epoch)

    monkeypatch.setattr(HDCIDForPreTraining, "extract_features", counting)
    pretrain(settings(shards, tmp_path / "once", epochs=1, club_steps=3))
    assert calls == [True] * STEPS_PER_EPOCH
    calls.clear()
    pretrain(settings(shards, tmp_path / "orig", epochs=1, club_steps=3, encoder_passes="per_club_step"))
    # per batch: 3 gradient-free passes for the CLUB steps, then the pass of the main loss
    assert calls == [False, False, False, True] * STEPS_PER_EPOCH
    a = load_file(tmp_path / "once" / "model" / "model.safetensors")
    b = load_file(tmp_path / "orig" / "model" / "model.safetensors")
    assert not torch.equal(a["hdcid.layers.0.codebook.embed"], b["hdcid.layers.0.codebook.embed"])


# mid epoch 0, epoch boundary, mid epoch 1 (both layers); the scheduler state is resumed too
@pytest.mark.parametrize("stop_at,schedule", [(4, "constant"), (6, "cosine"), (9, "linear")])
def test_resume_is_bit_identical_to_an_uninterrupted_run(shards, tmp_path, stop_at, schedule):
    run = dict(lr_scheduler=schedule, warmup_steps=3)
    full = pretrain(settings(shards, tmp_path / "a", **run))
    pretrain(settings(shards, tmp_path / "b", max_steps=stop_at, **run))
    assert list_checkpoints(tmp_path / "b")[-1].name == f"step_{stop_at:07d}"
    resumed = pretrain(settings(shards, tmp_path / "b", resume_from_checkpoint="latest", **run))

    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert sorted(a) == sorted(b)
    buffers = [k for k in a if ".codebook." in k]
    assert {k.rsplit(".", 1)[1] for k in buffers} == {"embed", "ema_count", "ema_weight", "unused_steps"}
    assert [k for k in a if not torch.equal(a[k], b[k])] == []

    drop = ("samples_per_s",)
    log_a = [{k: v for k, v in r.items() if k not in drop} for r in read_log(tmp_path / "a")]
    log_b = [{k: v for k, v in r.items() if k not in drop} for r in read_log(tmp_path / "b")]
    assert log_a == log_b


def test_resume_from_an_explicit_checkpoint_path_and_missing_one(shards, tmp_path):
    pretrain(settings(shards, tmp_path / "b", max_steps=3, epochs=1))
    ckpt = list_checkpoints(tmp_path / "b")[-1]
    # the state of step 3 loads into a fresh run that goes on to the end of epoch 0
    out = pretrain(settings(shards, tmp_path / "b", epochs=1, resume_from_checkpoint=str(ckpt)))
    assert [r["step"] for r in read_log(tmp_path / "b")] == list(range(1, STEPS_PER_EPOCH + 1))
    assert (out / "model.safetensors").exists()
    with pytest.raises(ValueError, match="is not a complete checkpoint"):
        pretrain(settings(shards, tmp_path / "c", resume_from_checkpoint=str(tmp_path / "nowhere")))


def test_clip_groups_cover_every_parameter_once():
    model = HDCIDForPreTraining(HDCIDConfig.tiny())
    groups = clip_groups(model)
    ids = [id(p) for _, params, _ in groups for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert "other" not in [name for name, _, _ in groups]
    assert {id(p) for _, params, club in groups if club for p in params} == {id(p) for p in model.club_parameters()}


def test_bad_settings_fail_before_training(shards, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # conftest isolates HF_HOME: no stored token either
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"data": str(shards), "epochs": 1, "batch_szie": 4}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['batch_szie'\]"):
        parse_command_line(["--config", str(config_file)])
    with pytest.raises(ValueError, match="epochs: expected an int >= 1, got 0"):
        PretrainConfig(data=str(shards), epochs=0)
    with pytest.raises(ValueError, match="mixed_precision: expected one of"):
        PretrainConfig(data=str(shards), mixed_precision="fp8")
    with pytest.raises(ValueError, match="club_update_order: expected one of"):
        PretrainConfig(data=str(shards), club_update_order="never")
    with pytest.raises(ValueError, match="encoder_passes: expected 'once' with club_update_order='after_main'"):
        PretrainConfig(data=str(shards), club_update_order="after_main", encoder_passes="per_club_step")
    with pytest.raises(ValueError, match="save_total_limit: expected an int >= 0, got -1"):
        PretrainConfig(data=str(shards), save_total_limit=-1)
    with pytest.raises(ValueError, match="dynamo_backend: expected"):
        PretrainConfig(data=str(shards), dynamo_backend="no_such_backend")

    out = tmp_path / "too_big"
    with pytest.raises(ValueError, match=f"batch_size: 64 x 1 process\\(es\\) = 64 is larger than the {CLIPS} clips"):
        pretrain(settings(shards, out, batch_size=64))
    assert not out.exists()

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="output_dir: .* is not writable"):
        pretrain(settings(shards, blocker / "out"))

    with pytest.raises(ValueError, match=r"model_config: invalid HDCIDConfig"):
        pretrain(settings(shards, tmp_path / "bad_model", model_config={"no_such_option": 1}))

    for bad, message in ((dict(lr_scheduler="step"), "lr_scheduler: expected one of"),
                         (dict(encoder_passes=6), "encoder_passes: expected one of"),
                         (dict(lr_gamma=2.0), r"lr_gamma: expected a number in \(0, 1\]"),
                         (dict(push_to_hub=True), "hub_model_id: expected .?ORG/NAME")):
        with pytest.raises(ValueError, match=message):
            settings(shards, tmp_path / "x", **bad)
    for bad, message in ((dict(report_to="no_such_tracker"), "report_to: expected"),
                         (dict(push_to_hub=True, hub_model_id="not a repo"), "hub_model_id: expected .?ORG/NAME"),
                         (dict(push_to_hub=True, hub_model_id="org/name"), "no Hugging Face token found")):
        out = tmp_path / "never"
        with pytest.raises(PretrainConfigError, match=message):
            pretrain(settings(shards, out, **bad))
        assert not out.exists()  # nothing written, no step run


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 trains on a GPU (benchmarks/gpu_check.py)")
def test_fp16_on_a_cpu_is_refused_before_training(shards, tmp_path):
    # Accelerate would run fp16 on a CPU as plain float32 without a word
    with pytest.raises(PretrainConfigError, match="mixed_precision: 'fp16' needs a GPU"):
        pretrain(settings(shards, tmp_path / "never", mixed_precision="fp16"))
    assert not (tmp_path / "never").exists()


def test_modalities_missing_from_the_shards_fail_before_training(tmp_path):
    from hf_hdcid.data.synthetic import build_synthetic_shards

    av = build_synthetic_shards(tmp_path / "av", HDCIDConfig.tiny(modalities=["audio", "video"]), {"pretrain": 8})
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"need \['text'\], which the shards .* do not have"):
        pretrain(PretrainConfig(data=str(av), output_dir=str(out), batch_size=4, progress=False))
    assert not out.exists()


def test_model_config_takes_the_feature_sizes_of_the_shard_schema(shards, tmp_path):
    import shutil

    from hf_hdcid.data.schema import MANIFEST_NAME, FeatureSchema, read_manifest
    from hf_hdcid.training.setup import build_model_config

    schema = FeatureSchema.from_manifest(read_manifest(shards))
    config = build_model_config(settings(shards, tmp_path / "out"), Path(shards))
    assert config.text_feature_dim == schema.text_feature_dim == 384 != HDCIDConfig.tiny().text_feature_dim
    assert FeatureSchema.from_config(config) == schema
    wider = build_model_config(settings(shards, tmp_path / "out", model_config={"num_frames": 8}), Path(shards))
    assert wider.num_frames == 8  # model_config wins over the shards
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    manifest = read_manifest(broken)
    manifest["config"]["video_spatial_size"] = 0
    (broken / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=rf"{broken / MANIFEST_NAME}: field 'config.video_spatial_size': "
                                         r"expected a positive int, got 0"):
        build_model_config(settings(broken, tmp_path / "out"), broken)


def test_script_reads_a_json_config_and_rejects_unknown_keys(shards, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import pretrain as script
    finally:
        sys.path.remove(str(REPO / "scripts"))
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps({"data": str(shards), "epochs": 3, "batch_size": 4}))
    cfg = script.parse_command_line(
        ["--config", str(config_file), "--epochs", "1", "--output-dir", str(tmp_path / "o"), "--clip", "none"])
    assert (cfg.epochs, cfg.batch_size, cfg.clip, cfg.output_dir) == (1, 4, None, str(tmp_path / "o"))
    config_file.write_text(json.dumps({"data": str(shards), "lr_main": 1e-3}))
    assert script.main(["--config", str(config_file)]) == 2
    assert "unknown key(s) ['lr_main']" in capsys.readouterr().err

    # the underscore spelling of transformers' example scripts is accepted too
    cfg = script.parse_command_line(
        ["--data", str(shards), "--resume_from_checkpoint", "latest", "--lr_scheduler", "cosine",
         "--warmup_steps", "5", "--push_to_hub", "--hub_model_id", "org/name", "--report-to", "tensorboard", "wandb"])
    assert (cfg.resume_from_checkpoint, cfg.lr_scheduler, cfg.warmup_steps, cfg.push_to_hub, cfg.hub_model_id,
            cfg.report_to) == ("latest", "cosine", 5, True, "org/name", ["tensorboard", "wandb"])
    # lists: space- or comma-separated (the previous command line's spelling)
    for flags in (["--report-to", "tensorboard,wandb", "--lr-milestones", "3,4"],
                  ["--report_to", "tensorboard", "wandb", "--lr_milestones", "3", "4"]):
        cfg = script.parse_command_line(["--data", str(shards), *flags])
        assert (cfg.report_to, cfg.lr_milestones) == (["tensorboard", "wandb"], [3, 4]), flags
    # an optional boolean: absent (None: the preset decides), --x, --x false, --no-x
    for flags, expected in (([], None), (["--normalize-inputs"], True), (["--no-normalize-inputs"], False),
                            (["--normalize_inputs", "false"], False)):
        assert script.parse_command_line(["--data", str(shards), *flags]).normalize_inputs is expected, flags
    # settings that fail inside pretrain (before training) also exit 2 with one line
    assert script.main(["--data", str(shards), "--output-dir", str(tmp_path / "o2"), "--batch-size", "999",
                        "--no-progress"]) == 2
    assert "batch_size: 999 x 1 process(es)" in capsys.readouterr().err


def launch_two_processes(shards, out, cwd, *flags) -> None:
    """``accelerate launch --multi_gpu`` on 2 CPU processes (gloo) of scripts/pretrain.py."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(REPO / "scripts" / "pretrain.py"),
               "--data", str(shards), "--output-dir", str(out), "--epochs", "2", "--batch-size", str(BATCH),
               "--club-steps", "1", "--model-config", '{"warm_start_epoch": 1}', "--save-rank-states",
               "--no-progress", *flags]
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_processes_keep_parameters_and_codebooks_identical_and_resume(shards, tmp_path):
    out = tmp_path / "ddp"
    launch_two_processes(shards, out, tmp_path, "--save-every-steps", "4")
    rank0 = torch.load(out / "rank_states" / "rank0.pt")
    rank1 = torch.load(out / "rank_states" / "rank1.pt")
    assert sorted(rank0) == sorted(rank1)
    assert [k for k in rank0 if not torch.equal(rank0[k], rank1[k])] == []
    steps = CLIPS // (2 * BATCH)  # each process gets half of every epoch
    assert [r["step"] for r in read_log(out)] == list(range(1, 2 * steps + 1))
    checkpoint = list_checkpoints(out)[-1]
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}
    saved = load_file(out / "model" / "model.safetensors")  # written by the main process
    assert [k for k in saved if not torch.equal(saved[k], rank0[k])] == []

    # resumed on 2 processes from the run's mid-epoch checkpoint (step 4 = 1 batch into epoch 1): the same
    # final state as the run that went on
    mid = out / "checkpoints" / "step_0000004"
    assert mid.is_dir(), sorted(p.name for p in list_checkpoints(out))
    launch_two_processes(shards, tmp_path / "ddp_b", tmp_path, "--resume-from-checkpoint", str(mid))
    assert [r["step"] for r in read_log(tmp_path / "ddp_b")] == [5, 6]
    for rank in (0, 1):
        resumed = torch.load(tmp_path / "ddp_b" / "rank_states" / f"rank{rank}.pt")
        assert [k for k in rank0 if not torch.equal(rank0[k], resumed[k])] == []


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(shards, tmp_path):
    """A real kill: the script runs in a subprocess and gets SIGKILL as soon as a mid-epoch checkpoint
    exists; resuming from the latest checkpoint must end with the same weights as a run never killed."""
    import signal
    import time

    limit = 2  # with the retention limit active: never more than 2 complete checkpoints
    args = ["--data", str(shards), "--epochs", "3", "--batch-size", str(BATCH), "--club-steps", "1",
            "--save-every-steps", "2", "--save-total-limit", str(limit), "--no-progress",
            "--model-config", '{"warm_start_epoch": 1}']
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    script = [sys.executable, str(REPO / "scripts" / "pretrain.py")]

    # the uninterrupted reference runs in this process: the same pretrain() the script calls, same settings
    reference = tmp_path / "uninterrupted"
    pretrain(PretrainConfig(data=str(shards), output_dir=str(reference), epochs=3, batch_size=BATCH, club_steps=1,
                            save_every_steps=2, progress=False, model_config={"warm_start_epoch": 1},
                            report_to="none", plot=False))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(script + args + ["--output-dir", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # kill once a checkpoint of epoch 1 (6 steps per epoch) at step >= 8 exists
    deadline, most = time.time() + 240, 0

    def reached() -> bool:
        found = list_checkpoints(killed)
        return bool(found) and int(found[-1].name[len("step_"):]) >= 8

    while not reached() and proc.poll() is None and time.time() < deadline:
        most = max(most, len(list_checkpoints(killed)))
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # it was really killed, not finished
    assert not (killed / "model").exists()
    latest = max(p.name for p in list_checkpoints(killed))
    assert "step_0000008" <= latest < "step_0000018"
    assert most <= limit and len(list_checkpoints(killed)) <= limit

    resumed = subprocess.run(script + args + ["--output-dir", str(killed), "--resume-from-checkpoint", "latest"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(reference / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # parameters and codebook buffers


def test_loss_curve_log_reader_names_a_broken_line(tmp_path):
    from hf_hdcid.training.plots import plot_loss_curves, read_log

    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_log(log)
    log.write_text("")
    with pytest.raises(ValueError, match="the log has no records to plot"):
        plot_loss_curves(log, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_normalize_inputs_stores_the_pretraining_split_statistics_in_the_config(shards, tmp_path):
    from hf_hdcid.data.shards import load_shards
    from hf_hdcid.training.loop import feature_statistics

    model_dir = pretrain(settings(shards, tmp_path / "norm", epochs=1, max_steps=2, normalize_inputs=True,
                                  toc_num_channels=0))
    config = HDCIDForPreTraining.from_pretrained(model_dir).config
    dataset, collate = load_shards(shards, config, split="pretrain")
    batch = collate(dataset[:])
    for m in ("audio", "video"):
        x = batch[m].double().reshape(-1, batch[m].shape[-1])  # every clip and position
        torch.testing.assert_close(torch.tensor(config.input_normalization[m]["mean"], dtype=torch.float64),
                                   x.mean(0), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(torch.tensor(config.input_normalization[m]["std"], dtype=torch.float64),
                                   x.std(0, unbiased=False), rtol=1e-7, atol=1e-9)
    assert "text" not in config.input_normalization
    # chunked sums equal one pass
    chunked, whole = feature_statistics(dataset, collate, config, chunk=5), feature_statistics(dataset, collate, config)
    for m in chunked:
        assert chunked[m]["mean"] == pytest.approx(whole[m]["mean"], rel=1e-9, abs=1e-12)
    with pytest.raises(ValueError, match="normalize_inputs: expected None, True or False, got 'yes'"):
        settings(shards, tmp_path / "bad", normalize_inputs="yes")


@pytest.mark.parametrize("preset, given, expected", [
    ("tiny", None, True), ("hdcid", None, True), ("dcid", None, True), ("original_hdcid", None, False),
    ("original_dcid", None, False), ("tiny", False, False), ("original_hdcid", True, True)])
def test_normalize_inputs_defaults_on_except_for_the_original_presets(preset, given, expected):
    assert PretrainConfig(preset=preset, normalize_inputs=given).inputs_normalized() is expected


def test_default_recipe_has_no_cross_commitment_and_the_original_presets_keep_it():
    # issue 14: the paper's commitment (no cross-modal terms) by default; the original's 1.0 in its presets
    assert HDCIDConfig().commitment_cross_weight == HDCIDConfig.tiny().commitment_cross_weight == 0.0
    assert HDCIDConfig.original_hdcid().commitment_cross_weight == 1.0
    assert HDCIDConfig.original_dcid().commitment_cross_weight == 1.0


def test_retention_keeps_the_newest_complete_checkpoints(shards, tmp_path):
    out = tmp_path / "kept"
    pretrain(settings(shards, out, epochs=1, save_every_steps=1, save_total_limit=2))
    assert [p.name for p in list_checkpoints(out)] == ["step_0000005", "step_0000006"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000005", "step_0000006"]  # no leftovers
    every = tmp_path / "all"
    pretrain(settings(shards, every, epochs=1, save_every_steps=2, save_total_limit=0))
    assert [p.name for p in list_checkpoints(every)] == ["step_0000002", "step_0000004", "step_0000006"]


def test_the_loop_runs_the_step_of_training_step_once_per_batch(shards, tmp_path, monkeypatch):
    from hf_hdcid.training import step as step_module

    calls = []
    original = step_module.PretrainingStep.__call__

    def counting(self, batch, epoch):
        calls.append(epoch)
        return original(self, batch, epoch)

    monkeypatch.setattr(step_module.PretrainingStep, "__call__", counting)
    pretrain(settings(shards, tmp_path / "o", epochs=2, gradient_accumulation_steps=2))
    assert calls == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH  # every micro-batch of both epochs
    log = read_log(tmp_path / "o")
    assert [r["step"] for r in log] == list(range(1, STEPS_PER_EPOCH + 1))  # 2 micro-batches per step


def test_help_lists_every_pretrain_config_field():
    import dataclasses

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain.py"), "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    for f in dataclasses.fields(PretrainConfig):
        assert f"--{f.name}" in result.stdout, f.name
        if "_" in f.name:
            assert f"--{f.name.replace('_', '-')}" in result.stdout, f.name
    assert "--config" in result.stdout


def test_replace_and_discard_folder_leave_one_complete_folder(tmp_path):
    from hf_hdcid.folders import discard_folder, replace_folder

    final, new = tmp_path / "model", tmp_path / ".tmp_model"
    final.mkdir()
    (final / "config.json").write_text("old")
    new.mkdir()
    (new / "config.json").write_text("new")
    replace_folder(new, final)
    assert (final / "config.json").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the old one is gone, nothing aside
    discard_folder(final)
    assert list(tmp_path.iterdir()) == []


def test_toc_channels_setting_is_a_deprecated_alias_of_toc_num_channels(tmp_path, capsys):
    import warnings

    saved = PretrainConfig(toc_num_channels=0, epochs=2).to_dict()
    saved["toc_channels"] = saved.pop("toc_num_channels")  # a pretrain_config.json written before the rename
    old_file = tmp_path / "pretrain_config.json"
    old_file.write_text(json.dumps(saved))
    with pytest.warns(FutureWarning, match="toc_channels is deprecated .* use toc_num_channels"):
        assert PretrainConfig.from_dict(PretrainConfig.read_json(old_file)).toc_num_channels == 0
    with pytest.warns(FutureWarning, match=str(old_file)):
        cfg = parse_command_line(["--config", str(old_file)])  # resume with the run's saved settings
    assert cfg.toc_num_channels == 0 and cfg.epochs == 2
    with pytest.warns(FutureWarning):
        assert PretrainConfig(toc_channels=4).toc_num_channels == 4
    with pytest.warns(FutureWarning):
        assert PretrainConfig(toc_num_channels=4).toc_channels == 4  # reading the old attribute
    with pytest.raises(ValueError, match="both 'toc_channels' \\(deprecated\\) and 'toc_num_channels'"):
        PretrainConfig(toc_channels=4, toc_num_channels=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_command_line(["--toc-num-channels", "5"]).toc_num_channels == 5  # the new name: no warning
    assert parse_command_line(["--toc-channels", "6"]).toc_num_channels == 6
    assert "--toc-channels is deprecated and will be removed; use --toc-num-channels" in capsys.readouterr().err
    with pytest.raises(ValueError, match="toc_num_channels: expected None or an int >= 0, got -1"):
        PretrainConfig(toc_num_channels=-1)
