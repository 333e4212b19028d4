"""Feature shards through the Hub as dataset repos: ``push_shards`` / ``hf-hdcid push-data`` to a fake Hub,
then ``load_shards("org/name")``, ``scripts/pretrain.py --data org/name`` and ``hf-hdcid evaluate --data
org/name`` offline from the Hub cache."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, constants

from hf_hdcid import HDCIDConfig, HDCIDModel
from hf_hdcid.cli import main
from hf_hdcid.data.hub_shards import (
    download_shards,
    push_shards,
    render_dataset_card,
    resolve_shards,
    shard_files,
    shards_repo_id,
)
from hf_hdcid.data.shards import MANIFEST_NAME, load_shards, write_shards
from hf_hdcid.data.synthetic import build_synthetic_shards

from fake_hub import FakeHub

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
CLIPS = {"pretrain": 16, "train": 16, "test": 16}
CONFIG = HDCIDConfig.tiny(modalities=["audio", "video"])  # no text model needed
REPO_ID = "hdcid-org/syn-av"
FOLDER_FILES = ["data-00000-of-00001.arrow", "dataset_info.json", MANIFEST_NAME, "state.json", "synthetic.json"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Tiny synthetic audio-video shards, plus files that must never be uploaded."""
    folder = build_synthetic_shards(tmp_path_factory.mktemp("hub_shards") / "syn", CONFIG, CLIPS, seed=0)
    (folder / ".DS_Store").write_bytes(b"hidden")
    (folder / ".syn.hdcid-lock").write_text("{}")
    (folder / "notes.txt").write_text("not part of the shards\n")
    (folder / "cache").mkdir()
    (folder / "cache" / "cache-1234.arrow").write_bytes(b"a datasets cache file")
    return folder


def folder_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def no_hub_calls(hub) -> bool:
    return hub.calls == [] and hub.commits == []


def subprocess_env(tmp_path, cache, **extra) -> dict:
    return {**os.environ, "HF_HOME": str(tmp_path / "sub_hf_home"), "HF_HUB_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "OMP_NUM_THREADS": "1", **extra}


def run_cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "hf_hdcid.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


# =============================================================================================
# push -> pull
# =============================================================================================
# The CLI in a fresh process with the fake Hub patched in: the records come back as JSON.
PUSH_DATA_IN_SUBPROCESS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from huggingface_hub import constants
    from fake_hub import FakeHub
    from hf_hdcid.cli import main
    root, record = sys.argv[2:4]
    fake = FakeHub(root=Path(root), cache_dir=Path(constants.HF_HUB_CACHE))
    with fake.patch():
        code = main(sys.argv[4:])
    Path(record).write_text(json.dumps({
        "calls": fake.calls,
        "commits": [{"repo_id": c.repo_id, "repo_type": c.repo_type, "message": c.message, "sha": c.sha,
                     "operations": c.operations} for c in fake.commits]}))
    sys.exit(code)
""")


def test_push_data_cli_uploads_exactly_the_folder_files_and_a_card_in_one_commit(shards, tmp_path):
    before = folder_digest(shards)
    (tmp_path / "push.py").write_text(PUSH_DATA_IN_SUBPROCESS)
    cache = tmp_path / "cache"
    env = subprocess_env(tmp_path, cache, HF_TOKEN="hf_sub")
    proc = subprocess.run([sys.executable, str(tmp_path / "push.py"), str(TESTS), str(tmp_path / "remote"),
                           str(tmp_path / "record.json"), "push-data", str(shards), REPO_ID, "--private",
                           "--license", "cc-by-4.0", "--commit-message", "shards via cli"],
                          capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "record.json").read_text())
    assert [c[0] for c in record["calls"]] == ["create_repo", "list_repo_files", "create_commit"]
    assert record["calls"][0][2] == {"private": True, "exist_ok": True, "token": "hf_sub", "repo_type": "dataset"}
    [commit] = record["commits"]
    assert (commit["repo_id"], commit["repo_type"], commit["message"]) == (REPO_ID, "dataset", "shards via cli")
    assert sorted(path for _, path, _ in commit["operations"]) == sorted(FOLDER_FILES + ["README.md"])
    assert {op for op, _, _ in commit["operations"]} == {"add"}
    sizes = {path: n for _, path, n in commit["operations"]}
    assert all(sizes[name] == (shards / name).stat().st_size for name in FOLDER_FILES)
    url = f"https://huggingface.co/datasets/{REPO_ID}/commit/{commit['sha']}"
    assert proc.stdout.strip() == f"pushed {shards} to the dataset repo {REPO_ID}: {url}"
    assert folder_digest(shards) == before  # the folder is uploaded unchanged and left unchanged
    snapshot = cache / f"datasets--{REPO_ID.replace('/', '--')}" / "snapshots" / commit["sha"]
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(FOLDER_FILES + ["README.md"])
    assert all((snapshot / n).read_bytes() == (shards / n).read_bytes() for n in FOLDER_FILES)
    assert DatasetCard.load(snapshot / "README.md").data.license == "cc-by-4.0"


def test_shard_files_are_the_state_listed_arrow_files_and_the_format_files(shards):
    assert shard_files(shards) == sorted(FOLDER_FILES)


def test_hub_id_loads_offline_with_the_same_rows_as_the_local_folder(shards, hub):
    push_shards(shards, REPO_ID, token="hf_fake")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    local, _ = load_shards(shards, CONFIG)
    pulled, collate = load_shards(REPO_ID, CONFIG)
    snapshot = Path(collate.source)
    assert snapshot.parent.parent.name == "datasets--hdcid-org--syn-av" and snapshot.name == hub.commits[0].sha
    assert len(pulled) == len(local) == sum(CLIPS.values())
    for column in ("clip_id", "split", "label", "audio", "video", "audio_labels", "video_labels"):
        a, b = local[:][column], pulled[:][column]
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), column
        else:
            assert a == b, column
    assert pulled[:]["video"].dtype == torch.float16 and pulled[:]["audio"].dtype == torch.float32
    train, _ = load_shards(REPO_ID, CONFIG, split="train")
    assert train[:]["clip_id"] == local[:]["clip_id"][16:32]


def test_dataset_card_parses_back_with_licence_splits_tags_and_schema(shards, hub):
    push_shards(shards, REPO_ID, token="hf_fake")
    card = DatasetCard.load(download_shards(REPO_ID) / "README.md")  # the cached snapshot file
    meta = yaml.safe_load(card.content.split("---")[1])
    assert meta["license"] == "other" and card.data.license == "other"
    assert meta["hdcid_shards"]["splits"] == CLIPS and meta["hdcid_shards"]["num_rows"] == 48
    assert meta["hdcid_shards"]["synthetic"] is True and meta["hdcid_shards"]["modalities"] == ["audio", "video"]
    assert meta["tags"] == ["hf-hdcid", "hdcid", "feature-shards", "multimodal", "audio", "video", "synthetic"]
    assert meta["size_categories"] == ["n<1K"] and meta["pretty_name"] == "syn-av"
    text = card.text
    for line in ("| `pretrain` | 16 |", "| **all** | 48 |",
                 "| `audio` | [6, 8] | `float32` |", "| `video` | [6, 5, 5, 12] | `float16` |",
                 "| `label` | scalar | `int64` |", "| `audio_labels` | [6, 29] | `int8` |",
                 f'load_shards("{REPO_ID}", split="train")', f"python scripts/pretrain.py --data {REPO_ID}",
                 f"hf-hdcid evaluate MODEL --task synthetic_ave --direction v2a --data {REPO_ID}",
                 "**Synthetic features**", "| Seed | 0 |", "| Clips per split | pretrain 16, train 16, test 16 |",
                 "A local folder named `hdcid-org/syn-av`"):
        assert line in text, line
    assert "| `text` |" not in text and "text_feature_dim" not in text  # not a modality of these shards


def test_card_of_converted_shards_names_layout_converter_and_asks_for_the_licence(tmp_path):
    records = [{"clip_id": f"c{i}", "split": "train" if i < 4 else "test", "label": i % 2,
                "audio": torch.randn(6, 8), "video": torch.rand(6, 5, 5, 12)} for i in range(6)]
    folder = write_shards(records, tmp_path / "ave", CONFIG)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["source"] = {"layout": "ave", "converter_version": "0.1.0",
                          "paths": {"csv_path": "/home/someone/private/AVE/testSet.txt",
                                    "audio_dir": "/home/someone/private/AVE/audio_feature.h5",
                                    "labels": {"audio": "/home/someone/AVVP_eval_audio.csv"},
                                    "splits": ["test", "train"], "modality": "audio", "num": 3},
                          "skipped_missing": ["clipA", "clipB"]}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    card = render_dataset_card(folder, "hdcid-org/ave-features")
    assert card.data.license == "other" and "synthetic" not in card.data.tags and "ave" in card.data.tags
    assert card.data.hdcid_shards["layout"] == "ave" and card.data.hdcid_shards["converter_version"] == "0.1.0"
    text = card.text
    assert "| Layout | `ave` |" in text and "version 0.1.0" in text
    assert "`csv_path`: `testSet.txt`" in text and "/home/someone" not in text  # file names only
    assert ('`labels`: `{"audio": "AVVP_eval_audio.csv"}`, `splits`: `["test", "train"]`, `modality`: `audio`, '
            '`num`: `3`') in text
    assert "| Clips skipped (features missing) | 2 (`clipA`, `clipB`) |" in text
    assert "**Set the licence of the benchmark these features were extracted from**" in text
    assert "--task ave --direction v2a" in text and "--split train" in text  # no pretrain split: train
    assert "synthetic.json" not in text
    assert render_dataset_card(folder, license="cc-by-nc-4.0").data.license == "cc-by-nc-4.0"


def test_pretrain_script_and_evaluate_run_offline_from_the_hub_cache(shards, hub, tmp_path):
    push_shards(shards, REPO_ID, token="hf_fake")
    env = subprocess_env(tmp_path, hub.cache_dir)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain.py"), "--data", REPO_ID, "--epochs", "1",
                           "--batch-size", "8", "--club-steps", "1", "--no-progress", "--report-to", "none",
                           "--no-plot", "--output-dir", str(out),
                           "--model-config", '{"modalities": ["audio", "video"]}'],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "model" / "training_info.json").read_text())
    assert info["data"]["dataset"] == REPO_ID and info["data"]["num_clips"] == 16 and info["steps"] == 2
    assert "datasets--hdcid-org--syn-av" in info["data"]["path"]
    card = (out / "model" / "README.md").read_text()
    assert f"| Dataset | [{REPO_ID}](https://huggingface.co/datasets/{REPO_ID}) |" in card  # linked, not a cache path
    assert "| Feature shards |" not in card and "datasets--" not in card
    assert yaml.safe_load(card.split("---")[1])["datasets"] == [REPO_ID]
    result = run_cli(["evaluate", out / "model", "--task", "synthetic_ave", "--direction", "v2a", "--data", REPO_ID,
                      "--test-data", REPO_ID, "--epochs", "1", "--out", tmp_path / "eval"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(next((tmp_path / "eval").glob("*.json")).read_text())
    assert record["data"]["train"] == REPO_ID and record["data"]["test"] == REPO_ID
    assert record["data"]["clips"]["test"] == 16


# =============================================================================================
# path or Hub id
# =============================================================================================
@pytest.mark.parametrize("name, repo_id", [
    ("hdcid-org/syn-av", "hdcid-org/syn-av"),
    ("./hdcid-org/syn-av", None), ("/abs/org/name", None), ("~/org/name", None), ("org/name/", None),
    ("a/b/c", None), ("bare-name", None), ("org/na--me", None), ("org/bad name", None), ("", None),
])
def test_shards_repo_id_reads_only_org_name_strings_that_are_no_local_path(name, repo_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shards_repo_id(name) == repo_id
    assert shards_repo_id(Path("hdcid-org/syn-av")) is None  # a Path is always local


def test_a_local_folder_named_like_the_repo_id_wins_over_the_hub(shards, hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(shards, tmp_path / "hdcid-org" / "syn-av")
    assert resolve_shards(REPO_ID) == Path(REPO_ID)
    data, collate = load_shards(REPO_ID)
    assert collate.source == str(tmp_path / "hdcid-org" / "syn-av") and len(data) == 48
    assert no_hub_calls(hub)
    assert resolve_shards("~/x") == Path.home() / "x"


# =============================================================================================
# errors
# =============================================================================================
@pytest.mark.parametrize("repo_id", ["no-namespace", "org/name/extra", "org/na--me", "org/", "org/bad name", None])
def test_push_shards_rejects_a_bad_repo_id_before_any_hub_call(shards, hub, repo_id):
    with pytest.raises(ValueError) as err:
        push_shards(shards, repo_id, token="hf_fake")
    assert str(err.value).startswith("repo_id: expected 'ORG/NAME'") and str(err.value).endswith(f"got {repo_id!r}")
    assert no_hub_calls(hub)


def test_push_shards_without_a_token_says_how_to_log_in(shards, hub):
    with pytest.raises(ValueError, match=r"no Hugging Face token: .*`hf auth login`.*HF_TOKEN"):
        push_shards(shards, REPO_ID)
    assert no_hub_calls(hub)


def test_push_shards_rejects_what_is_not_a_shard_folder_before_any_hub_call(shards, hub, tmp_path):
    with pytest.raises(ValueError, match=r"^folder: expected a shard folder .* \(a path that does not exist\)$"):
        push_shards(tmp_path / "missing", REPO_ID, token="hf_fake")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^folder: expected a shard folder .*empty' without hdcid_shards.json$"):
        push_shards(tmp_path / "empty", REPO_ID, token="hf_fake")
    broken = shutil.copytree(shards, tmp_path / "broken")
    arrow = broken / "data-00000-of-00001.arrow"
    arrow.write_bytes(arrow.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"^folder: expected .* that loads, got corrupt shard file .*expected \d+ "
                                         r"bytes \(manifest\), got 1000"):
        push_shards(broken, REPO_ID, token="hf_fake")
    with pytest.raises(ValueError, match=r"^license: expected a Hub licence identifier .*got 'CC BY 4.0'$"):
        push_shards(shards, REPO_ID, token="hf_fake", license="CC BY 4.0")
    with pytest.raises(ValueError, match=r"^commit_message: expected a non-empty string, got ''$"):
        push_shards(shards, REPO_ID, token="hf_fake", commit_message="")
    assert no_hub_calls(hub)


def test_cli_push_data_errors_print_one_line_and_exit_2_in_a_subprocess(tmp_path):
    env = subprocess_env(tmp_path, tmp_path / "cache", HF_TOKEN="hf_sub")
    proc = run_cli(["push-data", tmp_path / "nowhere", REPO_ID], env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"hf-hdcid push-data: error: folder: expected a shard folder written by write_shards (a datasets save_to_disk "
        f"folder with hdcid_shards.json), got {str(tmp_path / 'nowhere')!r} (a path that does not exist)"]


def test_cli_push_data_bad_repo_id_and_missing_token_are_one_line_exit_2(shards, hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert main(["push-data", str(shards), "not-a-repo"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "hf-hdcid push-data: error: repo_id: expected 'ORG/NAME' (letters, digits, '-', '_', '.'; no '--' or '..'), "
        "got 'not-a-repo'"]
    monkeypatch.delenv("HF_TOKEN")
    assert main(["push-data", str(shards), REPO_ID]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-hdcid push-data: error: no Hugging Face token")
    assert no_hub_calls(hub)


def test_cli_push_data_uploads_with_the_token_from_the_environment(shards, hub, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    assert main(["push-data", str(shards), REPO_ID]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"pushed {shards} to the dataset repo {REPO_ID}: https://huggingface.co/datasets/{REPO_ID}/commit/" \
                  f"{hub.commits[0].sha}"
    assert hub.calls[0][2] == {"private": False, "exist_ok": True, "token": "hf_env", "repo_type": "dataset"}
    assert hub.commits[0].message == "Upload H-DCID feature shards"
    assert DatasetCard.load(hub.tree(REPO_ID, repo_type="dataset") / "README.md").data.license == "other"


def test_a_repo_not_in_the_cache_while_offline_is_one_clear_line(hub, tmp_path, capsys):
    with pytest.raises(FileNotFoundError) as err:
        load_shards("hdcid-org/never-pushed")
    message = str(err.value)
    assert message == (f"no local folder 'hdcid-org/never-pushed' (read as a Hub dataset repo id): the Hub dataset "
                       f"repo 'hdcid-org/never-pushed' is not in the Hub cache ({hub.cache_dir}) and HF_HUB_OFFLINE=1 "
                       "forbids downloading it: download it once with network access (unset HF_HUB_OFFLINE), or "
                       "give the path of a local shard folder")
    from hf_hdcid.training.loop import PretrainConfig, PretrainConfigError, pretrain

    with pytest.raises(PretrainConfigError, match="the Hub dataset repo 'hdcid-org/never-pushed' is not in the Hub"):
        pretrain(PretrainConfig(data="hdcid-org/never-pushed", output_dir=str(tmp_path / "out"), progress=False,
                                report_to="none", plot=False))
    assert not (tmp_path / "out").exists()
    model = tmp_path / "model"
    torch.manual_seed(0)
    HDCIDModel(CONFIG).save_pretrained(model)
    assert main(["evaluate", str(model), "--task", "synthetic_ave", "--direction", "v2a",
                 "--data", "hdcid-org/never-pushed"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"hf-hdcid evaluate: error: {message}"]


def test_a_failed_upload_leaves_no_commit_and_nothing_in_the_cache(shards, hub):
    hub.fail_after_operations = 2
    with pytest.raises(OSError, match=r"^cannot reach the Hub at http://127.0.0.1:9 \(ConnectionError: fake hub: "
                                      r"connection lost after 2 operations\); nothing was uploaded$"):
        push_shards(shards, REPO_ID, token="hf_fake")
    assert hub.commits == [] and list(hub.tree(REPO_ID, repo_type="dataset").iterdir()) == []
    assert not (hub.cache_dir / "datasets--hdcid-org--syn-av").exists()
    with pytest.raises(FileNotFoundError, match="is not in the Hub cache"):
        load_shards(REPO_ID)
    hub.fail_after_operations = None
    push_shards(shards, REPO_ID, token="hf_fake")  # the retry commits everything at once
    assert len(hub.commits) == 1 and len(load_shards(REPO_ID).dataset) == 48


def test_a_second_push_replaces_stale_shard_files_and_keeps_other_files_in_one_commit(hub, tmp_path):
    def records(n):
        return [{"clip_id": f"c{i}", "split": "train", "audio": torch.randn(6, 8),
                 "video": torch.rand(6, 5, 5, 12)} for i in range(n)]

    folder = write_shards(records(6), tmp_path / "s", CONFIG, num_shards=3)
    push_shards(folder, REPO_ID, token="hf_fake")
    HfApi(token="hf_fake").create_commit(REPO_ID, [CommitOperationAdd("LICENSE", b"terms\n")],
                                         commit_message="licence file", repo_type="dataset")
    folder = write_shards(records(4), tmp_path / "s", CONFIG, num_shards=1, overwrite=True)
    push_shards(folder, REPO_ID, token="hf_fake", commit_message="re-sharded")
    last = hub.commits[-1]
    assert len(hub.commits) == 3 and last.message == "re-sharded"
    assert sorted(p for op, p, _ in last.operations if op == "delete") == [
        "data-00000-of-00003.arrow", "data-00001-of-00003.arrow", "data-00002-of-00003.arrow"]
    remote = sorted(p.name for p in hub.tree(REPO_ID, repo_type="dataset").iterdir())
    assert remote == sorted(["LICENSE", "README.md", "data-00000-of-00001.arrow", "dataset_info.json", MANIFEST_NAME,
                             "state.json"])
    data, _ = load_shards(REPO_ID)
    assert data[:]["clip_id"] == ["c0", "c1", "c2", "c3"]


def test_download_from_the_online_hub_into_a_fresh_cache(shards, tmp_path, monkeypatch):
    """``FakeHub(publish=False)`` stands for the online Hub: nothing is in the cache until downloaded."""
    cache = tmp_path / "fresh_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    online = FakeHub(root=tmp_path / "remote", cache_dir=cache, publish=False)
    with online.patch():
        push_shards(shards, REPO_ID, token="hf_fake")
        assert not cache.exists()
        data, collate = load_shards(REPO_ID, CONFIG)
        assert [c[0] for c in online.calls][-1] == "snapshot_download" and len(data) == 48
        assert Path(collate.source) == cache / "datasets--hdcid-org--syn-av" / "snapshots" / online.commits[0].sha
        with pytest.raises(ValueError, match=r"^no local folder 'hdcid-org/missing' \(read as a Hub dataset repo "
                                             r"id\): the Hub dataset repo 'hdcid-org/missing' does not exist at "
                                             r"http://127.0.0.1:9, or it is private or gated .*`hf auth login`"):
            load_shards("hdcid-org/missing")


def test_an_unreachable_hub_is_one_line_oserror_for_download_and_push(shards, monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # real connection attempts to the closed port
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(OSError, match=r"^cannot reach the Hub at http://127.0.0.1:9 \(ConnectError: .*\); the Hub "
                                      r"dataset repo 'org/name' is not in the Hub cache .*: check the connection"):
        download_shards("org/name")
    with pytest.raises(OSError, match=r"^cannot reach the Hub at http://127.0.0.1:9 .*; nothing was uploaded$"):
        push_shards(shards, "org/name", token="hf_test")


def test_download_shards_checks_its_arguments_and_names_a_missing_revision(shards, hub):
    push_shards(shards, REPO_ID, token="hf_fake")
    assert download_shards(REPO_ID, revision="main") == download_shards(REPO_ID)
    with pytest.raises(ValueError, match=r"^revision: expected None or a branch, tag or commit"):
        download_shards(REPO_ID, revision="")
    with pytest.raises(ValueError, match=r"^repo_id: expected 'ORG/NAME'"):
        download_shards("org/na--me")
    with pytest.raises(FileNotFoundError, match=r"^the Hub dataset repo 'hdcid-org/syn-av' at revision 'v9' is not "
                                                r"in the Hub cache"):
        download_shards(REPO_ID, revision="v9")


def _incomplete():
    from huggingface_hub.errors import IncompleteSnapshotError

    return IncompleteSnapshotError("The cached snapshot is incomplete: 1 file(s) are missing\n(state.json).",
                                   snapshot_path="/x")


def _unauthorized():
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/api/datasets/org/name"))
    return HfHubHTTPError("401 Client Error: Unauthorized\nInvalid credentials.", response=response)


@pytest.mark.parametrize("error, kind, message", [
    (_incomplete, FileNotFoundError, r"^the Hub dataset repo 'org/name' is only partly in the Hub cache \(.*\) "
                                     r"\(The cached snapshot is incomplete: 1 file\(s\) are missing \(state.json\).\); "
                                     r"or give the path of a local shard folder$"),
    (_unauthorized, OSError, r"^cannot download the Hub dataset repo 'org/name' from http://127.0.0.1:9 \(401 Client "
                             r"Error: Unauthorized Invalid credentials.\)$"),
])
def test_other_download_failures_are_one_line_naming_the_repo(monkeypatch, error, kind, message):
    import huggingface_hub

    def fail(*args, **kwargs):
        raise error()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(kind, match=message):
        download_shards("org/name")
