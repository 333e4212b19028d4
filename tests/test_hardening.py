"""Issue 19: no run overwrites another, saves are atomic, bad settings fail before training, wrong
weights never load or upload. One test per defect of the issue (concurrency with real processes)."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.folders import FolderBusyError, exclusive_folder, lock_file, staged_folder
from hf_hdcid.loading import check_model_folder, load_model
from hf_hdcid.training.loop import PretrainConfig, PretrainConfigError, check_finite_weights, pretrain

from conftest import minilm_synthetic_shards

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
CLI = [sys.executable, "-m", "hf_hdcid.cli"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return minilm_synthetic_shards(tmp_path_factory.mktemp("hardening_data") / "shards", {"pretrain": 32})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hardening_model") / "model"
    HDCIDForPreTraining(HDCIDConfig.tiny()).save_pretrained(folder)
    return folder


def settings(shards, out, **overrides) -> PretrainConfig:
    values = dict(data=str(shards), output_dir=str(out), epochs=1, batch_size=8, club_steps=1, progress=False,
                  report_to="none", plot=False)
    values.update(overrides)
    return PretrainConfig(**values)


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another real process holding ``folder``'s lock until killed."""
    code = ("import sys, time; from hf_hdcid.folders import exclusive_folder\n"
            "with exclusive_folder(sys.argv[1], 'holder-under-test'):\n"
            "    print('locked', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def run_cli(*args, cwd=None, in_process=True):
    """``hf-hdcid ARGS`` -> an object with returncode / stdout / stderr. By default in this process
    (``hf_hdcid.cli.main`` with captured output: the same code path as the console script, without the
    ~4 s of imports per call); ``in_process=False`` runs a real subprocess."""
    if not in_process:
        return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300)
    import contextlib
    import io
    import traceback

    from hf_hdcid import cli

    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main([str(a) for a in args])
            except SystemExit as exit_:  # argparse
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # what the interpreter would print for an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ================================================================================= 1. folder locks
def test_second_pretraining_run_into_a_locked_output_dir_fails_at_once_naming_the_holder(shards, tmp_path):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain.py"), "--data", str(shards),
                                 "--output-dir", str(out), "--epochs", "1", "--batch-size", "8", "--no-progress"],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert result.returncode != 0
        assert f"pid {holder.pid}" in result.stderr and "holder-under-test" in result.stderr, result.stderr[-2000:]
        assert "being written by another process" in result.stderr
        assert "Traceback" not in result.stderr
        assert time.monotonic() - started < 60
        assert not (out / "train_log.jsonl").exists() and not (out / "model").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died by SIGKILL: its stale lock is taken over, and released locks leave no file behind
    pretrain(settings(shards, out, toc_num_channels=0))
    assert (out / "model" / "model.safetensors").is_file()
    assert not lock_file(out).exists()


def test_lock_is_exclusive_within_a_process_and_its_file_goes_on_release(tmp_path):
    folder = tmp_path / "x"
    with exclusive_folder(folder, "first"):
        info = json.loads(lock_file(folder).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "first"
        with pytest.raises(FolderBusyError, match=f"pid {os.getpid()}.*'first'"):
            with exclusive_folder(folder, "second"):
                pass
    assert not lock_file(folder).exists()
    with exclusive_folder(folder):  # free again
        pass


def test_shard_writer_waits_for_no_one_and_rechecks_existence_under_the_lock(tmp_path):
    from hf_hdcid.data.shards import write_shards
    from hf_hdcid.data.synthetic import random_feature_batch

    config = HDCIDConfig.tiny()
    batch = random_feature_batch(config, 2, torch.Generator().manual_seed(0))
    records = [{"clip_id": f"c{i}", **{m: batch[m][i].numpy() for m in config.modalities}} for i in range(2)]
    out = tmp_path / "shards"
    holder = hold_lock(out)
    try:
        with pytest.raises(FolderBusyError, match="being written by another process"):
            write_shards(records, out, config)
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()
    write_shards(records, out, config)
    with pytest.raises(FileExistsError, match="already exists"):
        write_shards(records, out, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]  # no lock file, no temporaries


def test_two_concurrent_make_synthetic_into_one_folder_never_both_succeed(tmp_path):
    out = tmp_path / "synthetic"
    args = ["make-synthetic", str(out), "--preset", "tiny", "--clips", "64", "--downstream-clips", "16"]
    procs = [subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    failed = next(err for code, err in results if code == 2)
    assert "being written by another process" in failed or "already exists" in failed, failed


# ============================================================================ 2. wrong weights refused
def _copy(model_dir: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(model_dir, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_foreign_weights_truncated_files_and_edited_configs_are_refused(model_dir, tmp_path):
    foreign = _copy(model_dir, tmp_path / "foreign")
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(8, 4),
               "bert.pooler.dense.weight": torch.zeros(4, 4)}, foreign / "model.safetensors")
    truncated = _copy(model_dir, tmp_path / "truncated")
    size = (truncated / "model.safetensors").stat().st_size
    os.truncate(truncated / "model.safetensors", size - 100)
    wider = _copy(model_dir, tmp_path / "wider")
    _edit_config(wider, hidden_size=2 * json.loads((model_dir / "config.json").read_text())["hidden_size"])
    bigger_book = _copy(model_dir, tmp_path / "codebook")
    _edit_config(bigger_book, codebook_size=json.loads((model_dir / "config.json").read_text())["codebook_size"] + 1)
    other_type = _copy(model_dir, tmp_path / "foo")
    _edit_config(other_type, model_type="foo")
    cases = {foreign: "weights do not match config.json", truncated: "truncated", wider: "other sizes",
             bigger_book: "other sizes", other_type: "model_type: expected 'hdcid', got 'foo'"}
    check_model_folder(model_dir)  # the intact folder passes
    for folder, message in cases.items():
        with pytest.raises(ValueError, match=message):
            check_model_folder(folder)
        with pytest.raises(ValueError, match=message):
            load_model(folder)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model(tmp_path / "absent")


def test_evaluate_toc_card_and_push_refuse_foreign_weights_before_any_work(model_dir, tmp_path, monkeypatch):
    from hf_hdcid.hub import push, write_model_card

    foreign = _copy(model_dir, tmp_path / "foreign")
    save_file({"bert.pooler.dense.weight": torch.zeros(4, 4)}, foreign / "model.safetensors")
    result = run_cli("toc", foreign, "--channels", "4")
    assert_one_line_error(result, "weights do not match")
    assert not (tmp_path / "foreign-toc4").exists()
    result = run_cli("evaluate", foreign, "--task", "synthetic_ave", "--direction", "v2a", "--data", tmp_path)
    assert_one_line_error(result, "weights do not match")
    with pytest.raises(ValueError, match="weights do not match"):
        write_model_card(foreign)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ValueError, match="weights do not match"):  # before any network call
        push(foreign, "org/name", token="hf_test")


def test_push_to_an_unreachable_hub_is_one_line_oserror(model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hf_hdcid.hub import push

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # a real connection attempt to the closed port
    folder = _copy(model_dir, tmp_path / "m")
    with pytest.raises(OSError, match="cannot reach the Hub at http://127.0.0.1:9.*nothing was uploaded"):
        push(folder, "org/name", token="hf_test")


# ================================================================ 3. settings checked before training
def test_toc_and_quantizer_settings_fail_before_the_first_step(shards, tmp_path):
    out = tmp_path / "toc999"
    with pytest.raises(PretrainConfigError, match=r"toc_num_channels: expected at most hidden_size = \d+ .* got 999"):
        pretrain(settings(shards, out, toc_num_channels=999))
    assert not (out / "train_log.jsonl").exists() and not (out / "checkpoints").exists()
    with pytest.raises(PretrainConfigError, match="toc_num_channels: expected 0 or None with quantizer='fsq'"):
        pretrain(settings(shards, tmp_path / "fsq4", toc_num_channels=4, model_config={"quantizer": "fsq", "use_cmcm": False}))
    # fsq with the default TOC setting: no TOC (nothing to select), and the run completes
    model = pretrain(settings(shards, tmp_path / "fsq", model_config={"quantizer": "fsq", "use_cmcm": False}))
    assert json.loads((model / "config.json").read_text())["toc_channels"] is None


def test_cli_numeric_and_location_checks_come_first(model_dir, tmp_path):
    result = run_cli("evaluate", model_dir, "--task", "synthetic_ave", "--direction", "v2a", "--data", tmp_path,
                     "--lr", "inf", in_process=False)  # the console entry point itself, once
    assert_one_line_error(result, "lr: expected a finite probe learning rate in (0, 1], got inf")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("evaluate", model_dir, "--task", "synthetic_ave", "--direction", "v2a", "--data", tmp_path,
                     "--out", blocker)
    assert_one_line_error(result, "out_dir: expected a folder", "an existing file")
    result = run_cli("convert-features", "ave", tmp_path / "o", "--path", "rooot=/x")
    assert_one_line_error(result, "--path (layout 'ave'): expected keys root", "unknown: rooot", "missing: root")
    no_tokenizer = tmp_path / "bert"
    no_tokenizer.mkdir()
    (no_tokenizer / "config.json").write_text("{}")
    result = run_cli("make-synthetic", tmp_path / "syn", "--text-model", no_tokenizer)
    assert_one_line_error(result, "no tokenizer files")
    result = run_cli("--debug", "evaluate", model_dir, "--task", "synthetic_ave", "--direction", "v2a",
                     "--data", tmp_path, "--lr", "inf", in_process=False)
    assert result.returncode != 0 and "Traceback" in result.stderr  # --debug shows it


def test_demo_checks_its_settings_and_output_folder_first_and_holds_its_lock(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("demo", "--output-dir", blocker)
    assert_one_line_error(result, "output_dir: expected a folder", "an existing file")
    result = run_cli("demo", "--output-dir", tmp_path / "d", "--epochs", "0")
    assert_one_line_error(result, "epochs: expected an int >= 1, got 0")
    result = run_cli("demo", "--output-dir", tmp_path / "d", "--lr", "nan")
    assert_one_line_error(result, "lr: expected a finite learning rate in (0, 1], got nan")
    busy = tmp_path / "busy"
    holder = hold_lock(busy)
    try:
        started = time.perf_counter()
        result = run_cli("demo", "--output-dir", busy)
        assert_one_line_error(result, "is being written by another process", "holder-under-test",
                              f"pid {holder.pid}")
        assert time.perf_counter() - started < 60  # at once, not after the benchmark is built
    finally:
        holder.kill()
        holder.wait()
    assert not (busy / "synthetic_avt").exists()


def test_toc_out_never_replaces_another_folder_silently(model_dir, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = run_cli("toc", model_dir, "--channels", "4", "--out", target)
    assert_one_line_error(result, "already exists")
    result = run_cli("toc", model_dir, "--channels", "4", "--out", target, "--overwrite")
    assert_one_line_error(result, "is not a model folder")
    assert (target / "notes.txt").read_text() == "keep me"
    result = run_cli("toc", model_dir, "--channels", "999")
    assert_one_line_error(result, "num_channels: expected an int in [1,")
    out = tmp_path / "toc"
    assert run_cli("toc", model_dir, "--channels", "4", "--out", out).returncode == 0
    assert run_cli("toc", model_dir, "--channels", "3", "--out", out, "--overwrite").returncode == 0
    assert json.loads((out / "toc_summary.json").read_text())["settings"]["num_channels"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "toc"]


# ================================================================= 4. atomic final save, disk full
def test_a_failed_final_save_leaves_the_previous_model_folder_whole(shards, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = pretrain(settings(shards, out, toc_num_channels=0))
    before = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}

    def full_disk(self, *args, **kwargs):
        Path(args[0]).mkdir(parents=True, exist_ok=True)
        Path(args[0], "config.json").write_text("{}")  # half-written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(HDCIDForPreTraining, "save_pretrained", full_disk)
    with pytest.raises(OSError, match=r"no space left on the device while writing the model folder .*model: "
                                      r"[\d.]+ MB free"):
        pretrain(settings(shards, out, toc_num_channels=4, resume_from_checkpoint=None))
    after = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    assert after == before  # the old folder, complete; no new config beside old weights
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary, no lock left


def test_disk_full_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(shards, tmp_path, monkeypatch):
    import accelerate.checkpointing as checkpointing

    real_save, calls = checkpointing.save, []

    def short_write(obj, f, *args, **kwargs):  # the second checkpoint's first torch-saved state hits a full disk
        calls.append(str(f))
        if "step_0000008" not in str(f):
            return real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 931264 vs 931156")

    monkeypatch.setattr(checkpointing, "save", short_write)
    out = tmp_path / "run"
    with pytest.raises(OSError, match=r"no space left on the device while writing checkpoint \S*checkpoints/"
                                      r"step_0000008: [\d.]+ MB free, [\d.]+ MB written before it failed") as caught:
        pretrain(settings(shards, out, epochs=2, toc_num_channels=0))
    assert "\n" not in str(caught.value) and "931264" in str(caught.value)  # torch's words kept, on one line
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_0000004"]  # no .tmp_, no partial step
    assert not (out / "model").exists()
    monkeypatch.setattr(checkpointing, "save", real_save)
    model = pretrain(settings(shards, out, epochs=2, toc_num_channels=0, resume_from_checkpoint="latest"))
    check_model_folder(model)  # the intact earlier checkpoint resumes


def test_checkpoint_write_errors_are_mapped_only_when_they_are_disk_errors(tmp_path):
    from safetensors import SafetensorError

    from hf_hdcid.folders import write_error

    def checkpoint_write_error(err, final, written):  # as save_checkpoint maps a failed write
        return write_error(err, final, "writing checkpoint", written)

    final = tmp_path / "checkpoints" / "step_0000002"
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert isinstance(checkpoint_write_error(full, final, 2**20), OSError)
    assert "1.0 MB written" in str(checkpoint_write_error(full, final, 2**20))
    readonly = OSError(errno.EROFS, "Read-only file system")
    assert "read-only file system: cannot write" in str(checkpoint_write_error(readonly, final, 0))
    other = KeyError("optimizer")
    assert checkpoint_write_error(other, final, 0) is other  # a bug stays a bug


@pytest.fixture
def full_disk(tmp_path):
    """A real, small file system (tmpfs, 256 KB): needs root and mount (skipped otherwise)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield folder
    import gc

    # an in-process CLI failure leaves datasets' writer (an open, deleted .arrow file on this mount) in a
    # traceback reference cycle until the next collection
    gc.collect()
    subprocess.run(["umount", str(folder)], check=True)


def test_a_real_full_disk_is_one_line_and_leaves_nothing_for_toc_and_make_synthetic(model_dir, full_disk):
    result = run_cli("toc", model_dir, "--channels", "4", "--out", full_disk / "toc")
    assert_one_line_error(result, "no space left on the device while writing", "toc", "MB free",
                          "SafetensorError")
    result = run_cli("make-synthetic", full_disk / "syn", "--clips", "64")
    assert_one_line_error(result, "no space left on the device while writing shards into", "syn", "MB free")
    assert sorted(full_disk.iterdir()) == []  # no partial folder, no temporary, no lock file


def test_write_error_finds_the_disk_error_in_chains_and_writer_messages(tmp_path):
    from datasets.exceptions import DatasetGenerationError

    from hf_hdcid.folders import write_error

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise DatasetGenerationError("An error occurred while generating the dataset") from inner
    except DatasetGenerationError as wrapped:
        mapped = write_error(wrapped, tmp_path / "shards", "writing shards into")
    assert isinstance(mapped, OSError) and mapped.errno == errno.ENOSPC and "shards" in str(mapped)
    readonly = write_error(RuntimeError("Error while serializing: I/O error: Read-only file system (os error 30)"),
                           tmp_path / "m")
    assert readonly.errno == errno.EROFS and "read-only file system: cannot write" in str(readonly)
    bug = TypeError("unsupported operand")
    assert write_error(bug, tmp_path) is bug


def test_staged_folder_leaves_nothing_on_failure_and_refuses_to_clobber(tmp_path):
    final = tmp_path / "f"
    with pytest.raises(RuntimeError):
        with staged_folder(final) as tmp:
            (tmp / "a").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with staged_folder(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError, match="already exists"):
        with staged_folder(final):
            pass
    with staged_folder(final, overwrite=True) as tmp:
        (tmp / "a").write_text("2")
    assert (final / "a").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# ===================================================================== 5. NaN weights never saved
def test_nan_weights_are_never_saved_as_a_success(tmp_path):
    model = HDCIDForPreTraining(HDCIDConfig.tiny())
    check_finite_weights(model, "ok")
    with torch.no_grad():
        model.hdcid.layers[0].codebook.embed.view(-1)[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 7: 1 of \d+ tensors hold NaN/inf \(hdcid\.layers\.0\.codebook"):
        check_finite_weights(model, "step 7")


def test_nan_in_a_shard_is_named_by_clip_at_its_first_batch_and_never_trains_to_success(shards, tmp_path,
                                                                                         monkeypatch):
    from hf_hdcid.data.shards import HDCIDCollator, load_shards

    dataset, collate = load_shards(shards, HDCIDConfig.tiny(text_feature_dim=384), split="pretrain")
    rows = [dataset[i] for i in range(3)]
    rows[1]["video"] = rows[1]["video"].clone()
    rows[1]["video"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=rf"{shards}: video features of clip '{rows[1]['clip_id']}' hold NaN/inf"):
        collate(rows)
    # with the check off, the NaN reaches the model: the run must not end "successfully"
    original = HDCIDCollator.__call__

    def poisoned(self, batch):
        out = original(self, batch)
        out["audio"][0, 0, 0] = float("nan")
        return out

    monkeypatch.setattr(HDCIDCollator, "__call__", poisoned)
    with pytest.raises(PretrainConfigError, match="the audio features hold NaN/inf"):  # the input statistics
        pretrain(settings(shards, tmp_path / "stats", model_config={"check_finite_inputs": False}))
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError):
        pretrain(settings(shards, out, model_config={"check_finite_inputs": False}, normalize_inputs=False,
                          toc_num_channels=0))
    assert not (out / "model").exists()


# ====================================================================== 6. damaged checkpoints
def test_damaged_checkpoint_is_named_or_skipped_with_fallback_and_resume_stays_identical(shards, tmp_path):
    from safetensors.torch import load_file

    reference = pretrain(settings(shards, tmp_path / "reference", epochs=2, toc_num_channels=0))
    out = tmp_path / "run"
    pretrain(settings(shards, out, epochs=2, toc_num_channels=0))
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["step_0000004", "step_0000008"]
    (checkpoints[-1] / "random_states_0.pkl").write_bytes(b"not a pickle")
    with pytest.raises(PretrainConfigError, match=r"step_0000008: random_states_0.pkl is damaged.*resume_fallback"):
        pretrain(settings(shards, out, epochs=2, toc_num_channels=0, resume_from_checkpoint="latest"))
    model = pretrain(settings(shards, out, epochs=2, toc_num_channels=0, resume_from_checkpoint="latest",
                              resume_fallback=True))
    got, want = load_file(model / "model.safetensors"), load_file(reference / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    # a truncated model file in an explicitly named checkpoint: named, no fallback for an explicit path
    weights = next((out / "checkpoints" / "step_0000004").glob("model*.safetensors"))
    os.truncate(weights, weights.stat().st_size - 8)
    with pytest.raises(PretrainConfigError, match=rf"{weights.name}: truncated"):
        pretrain(settings(shards, out, epochs=2, resume_from_checkpoint=str(weights.parent), resume_fallback=True))


def test_convert_original_output_is_staged_and_never_clobbers(tmp_path):
    from hf_hdcid.convert_original import ConversionReport, save_converted

    model = HDCIDForPreTraining(HDCIDConfig.tiny())
    report = ConversionReport(variant="hdcid")
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a model folder"):
        save_converted(model, report, other, overwrite=True)
    assert (other / "data.txt").read_text() == "keep"
    out = save_converted(model, report, tmp_path / "converted")
    check_model_folder(out)
    card = (out / "README.md").read_text()  # the folder's owner writes its card with it
    assert "# converted" in card and json.loads((out / "conversion_report.json").read_text())["variant"] == "hdcid"
    encoder = save_converted(model, report, tmp_path / "encoder", encoder_only=True)
    assert (encoder / "README.md").is_file() and check_model_folder(encoder) is not None
    with pytest.raises(FileExistsError, match="already exists"):
        save_converted(model, report, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "encoder", "other"]


def test_truncated_original_checkpoint_is_named_as_cut_short(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save({"Encoder_parameters": {"w": torch.zeros(64, 64)}}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    result = run_cli("convert-original", cut, tmp_path / "out")
    assert_one_line_error(result, "cut.pt: a torch.save checkpoint cut short or damaged", "bytes",
                          "copy or download it again")
    assert "starting with" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt", "whole.pt"]  # no output folder


def test_malformed_manifest_is_named_by_every_reader(shards, tmp_path):
    import shutil

    from hf_hdcid.data.shards import load_shards

    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / "hdcid_shards.json").write_text("{not json")
    with pytest.raises(PretrainConfigError, match=r"broken/hdcid_shards.json: not valid JSON"):
        pretrain(settings(broken, tmp_path / "out"))
    with pytest.raises(ValueError, match=r"broken/hdcid_shards.json: not valid JSON"):
        load_shards(broken)
    (broken / "hdcid_shards.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="hdcid_shards.json: expected a JSON object, got list"):
        load_shards(broken)
