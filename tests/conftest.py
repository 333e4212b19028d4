"""Shared fixtures: offline Hugging Face environment, tiny configs and synthetic batches."""

import atexit
import os
import shutil
import sys
import tempfile

# An isolated Hugging Face home for the whole session, set BEFORE huggingface_hub / transformers are
# imported (they read HF_HOME, the cache and token paths, and HF_MODULES_CACHE at import time): no test
# reads the user's cache or token.
_HF_HOME = tempfile.mkdtemp(prefix="hf_hdcid_tests_hf_home_")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_MODULES_CACHE"] = os.path.join(_HF_HOME, "modules")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HF_TOKEN", None)
# One thread, here and in every subprocess (set before torch is imported): the tiny models gain nothing
# from a second thread on 2 cores, and on a machine shared with other jobs two spinning OpenMP threads
# per process made a training step 2.5x slower than one (BENCHMARKS.md, issue 13).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

# Nothing may reach the network: a closed loopback port for the Hub, offline mode, quiet bars.
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)

from hf_hdcid import HDCIDConfig  # noqa: E402
from fake_hub import FakeHub  # noqa: E402
from huggingface_hub import constants  # noqa: E402


# Start of a subprocess script that must run without this package (Hub remote code only).
WITHOUT_PACKAGE = """import json, sys
sys.modules["hf_hdcid"] = None  # the package must not be importable in this process
try:
    import hf_hdcid  # noqa: F401
    raise SystemExit("hf_hdcid was importable")
except ImportError:
    pass
import torch
"""


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


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state (one mixed precision / accumulation setting per process)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Every test starts with no Accelerator state left by the one before."""
    yield
    if "accelerate.state" in sys.modules:
        reset_accelerate_state()


def free_port() -> int:
    """A free TCP port on the loopback interface (for torch.distributed / accelerate launch)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def minilm_synthetic_shards(path, clips: dict):
    """The synthetic benchmark (tiny preset) with prompts embedded by the offline MiniLM, at ``path``."""
    from hf_hdcid.data.synthetic import build_synthetic_shards
    from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model

    extractor = TextFeatureExtractor(default_offline_text_model(), num_tokens=HDCIDConfig.tiny().num_frames,
                                     progress=False)
    config = HDCIDConfig.tiny(text_feature_dim=extractor.hidden_size)
    return build_synthetic_shards(path, config, clips, seed=0, text_extractor=extractor)


@pytest.fixture
def tiny_config():
    return HDCIDConfig.tiny()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub whose commits land in a private HF cache; no token unless a test gives one."""
    cache = tmp_path / "hub_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no_stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeHub(root=tmp_path / "remote", cache_dir=cache)
    with fake.patch():
        yield fake
