"""Shared fixtures: offline Hugging Face environment, tiny configs and synthetic batches."""

import os

import pytest
import torch

# Nothing may reach the network: a closed loopback port for the Hub, offline mode, quiet bars.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from hf_hdcid import HDCIDConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_MODULES_CACHE", str(home / "modules"))


def make_batch(config: HDCIDConfig, batch_size: int = 3, seed: int = 0, dtype=torch.float32) -> dict:
    """Random features of every modality of ``config`` (video non-negative like VGG maps)."""
    g = torch.Generator().manual_seed(seed)
    t, s = config.num_frames, config.video_spatial_size
    full = {
        "audio": torch.randn(batch_size, t, config.audio_feature_dim, generator=g),
        "video": torch.randn(batch_size, t, s, s, config.video_feature_dim, generator=g).relu(),
        "text": torch.randn(batch_size, t, config.text_feature_dim, generator=g),
    }
    return {m: full[m].to(dtype) for m in config.modalities}


@pytest.fixture
def tiny_config():
    return HDCIDConfig.tiny()
