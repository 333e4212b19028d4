"""save_pretrained / from_pretrained round trips, Auto classes and remote code in a fresh process."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel

from conftest import WITHOUT_PACKAGE, make_batch


def trained_tiny(tmp_path, **overrides):
    """A tiny pretraining model after two updates (non-trivial EMA buffers), saved to tmp_path."""
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0, toc_channels=[[4, 1, 9], [0, 15]], **overrides)
    model = HDCIDForPreTraining(cfg).train()
    for seed in range(2):
        model.compute_losses(make_batch(cfg, seed=seed), epoch=0).loss.backward()
    model.save_pretrained(tmp_path)
    return model


def test_round_trip_is_bit_exact_buffers_included(tmp_path):
    model = trained_tiny(tmp_path)
    assert model.hdcid.layers[0].codebook.unused_steps.max() >= 0  # buffers moved off their init
    back = HDCIDForPreTraining.from_pretrained(tmp_path)
    own, loaded = model.state_dict(), back.state_dict()
    assert own.keys() == loaded.keys()
    for key in own:
        assert own[key].dtype == loaded[key].dtype and torch.equal(own[key], loaded[key]), key
    assert back.config.toc_channels == [[4, 1, 9], [0, 15]]
    x = make_batch(model.config, seed=5)
    model.eval(), back.eval()
    with torch.no_grad():
        torch.manual_seed(1)  # CPC draws its time step, CLUB its permutation
        a = model.compute_losses(x, epoch=0)
        torch.manual_seed(1)
        b = back.compute_losses(x, epoch=0)
    assert torch.equal(a.loss, b.loss)


def test_pretraining_checkpoint_loads_into_the_base_model(tmp_path):
    model = trained_tiny(tmp_path)
    base, info = HDCIDModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    for key, value in base.state_dict().items():
        assert torch.equal(value, model.hdcid.state_dict()[key]), key
    auto = AutoModel.from_pretrained(tmp_path)
    assert type(auto) is HDCIDModel
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)) is HDCIDForPreTraining
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HDCIDConfig)
    model.eval()
    x = make_batch(model.config, seed=3)["video"]
    assert torch.equal(auto.eval().encode("video", x).unified, model.hdcid.encode("video", x).unified)


def test_base_model_saves_and_loads_into_pretraining_with_fresh_heads(tmp_path):
    torch.manual_seed(0)
    base = HDCIDModel(HDCIDConfig.tiny())
    base.save_pretrained(tmp_path)
    pre, info = HDCIDForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert any(k.startswith("decoders.") for k in info["missing_keys"])
    for key, value in base.state_dict().items():
        assert torch.equal(pre.hdcid.state_dict()[key], value), key
    for name, p in pre.named_parameters():  # freshly initialised heads are real numbers
        assert torch.isfinite(p).all() and (p.abs().sum() > 0 or "bias" in name), name


def test_checkpoint_holds_fp32_codebooks_and_the_auto_map(tmp_path):
    trained_tiny(tmp_path)
    names = sorted(os.listdir(tmp_path))
    assert {"config.json", "model.safetensors", "configuration_hdcid.py", "modeling_hdcid.py",
            "codebook_hdcid.py", "quantizer_family_hdcid.py", "objectives_hdcid.py", "recurrent_hdcid.py",
            "toc_hdcid.py", "convolution_hdcid.py"} <= set(names)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "hdcid"
    assert cfg["auto_map"] == {
        "AutoConfig": "configuration_hdcid.HDCIDConfig",
        "AutoModel": "modeling_hdcid.HDCIDModel",
        "AutoModelForPreTraining": "modeling_hdcid.HDCIDForPreTraining",
    }
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors["hdcid.layers.0.codebook.embed"].dtype == torch.float32
    assert tensors["hdcid.layers.1.codebook.unused_steps"].dtype == torch.int64


def test_bf16_load_keeps_codebooks_fp32(tmp_path):
    model = trained_tiny(tmp_path)
    bf16 = HDCIDModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.layers[0].general["audio"].transformer.projection.weight.dtype == torch.bfloat16
    for k, layer in enumerate(bf16.layers):
        assert layer.codebook.embed.dtype == torch.float32
        assert torch.equal(layer.codebook.embed, model.hdcid.layers[k].codebook.embed)
    out = bf16.eval().encode("audio", make_batch(model.config)["audio"])
    assert out.unified.dtype == torch.float32


REMOTE = WITHOUT_PACKAGE + textwrap.dedent("""
    from transformers import AutoModel, AutoModelForPreTraining
    folder, inputs, expected = sys.argv[1], sys.argv[2], sys.argv[3]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    pre = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True)
    x = torch.load(inputs, weights_only=True)
    with torch.no_grad():
        out = model.encode("video", x)
    ref = torch.load(expected, weights_only=True)
    print(json.dumps({
        "class": type(model).__module__ + "." + type(model).__name__,
        "pre_class": type(pre).__name__,
        "equal": bool(torch.equal(out.unified, ref)),
        "codebook_equal": bool(torch.equal(model.layers[0].codebook.embed, pre.hdcid.layers[0].codebook.embed)),
        "modules": sorted(name.rsplit(".", 1)[-1] for name in sys.modules
                          if name.startswith("transformers_modules.") and name.endswith("_hdcid")),
    }))
""")


def run_remote(model, folder, tmp_path) -> dict:
    """Load ``folder`` with AutoModel(ForPreTraining) and its remote code in a process without the
    package; the JSON line of REMOTE (``equal``: its video codes are ``model``'s)."""
    x = make_batch(model.config, seed=9)["video"]
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model.hdcid.encode("video", x).unified, tmp_path / "ref.pt")
    script = tmp_path / "remote.py"
    script.write_text(REMOTE)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "x.pt"),
                           str(tmp_path / "ref.pt")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: remote-code files renamed after 0.1.0 (new name -> the name folders saved by 0.1.0 carry)
RENAMED_REMOTE_CODE = {"codebook_hdcid": "quantization_hdcid", "quantizer_family_hdcid": "quantizers_hdcid"}


def to_release_layout(folder) -> None:
    """Rewrite a saved folder to the remote-code layout save_pretrained wrote in release 0.1.0: the
    codebook in quantization_hdcid.py, the quantizer family in quantizers_hdcid.py, imported by those names."""
    for new, old in RENAMED_REMOTE_CODE.items():
        (folder / f"{new}.py").rename(folder / f"{old}.py")
    for path in folder.glob("*.py"):
        text = path.read_text()
        for new, old in RENAMED_REMOTE_CODE.items():
            text = text.replace(f"from .{new} import", f"from .{old} import")
        path.write_text(text)


def test_folder_saved_with_the_release_file_names_still_loads(tmp_path):
    model = trained_tiny(tmp_path / "old").eval()
    folder = tmp_path / "old"
    to_release_layout(folder)
    assert {"quantization_hdcid.py", "quantizers_hdcid.py"} <= set(os.listdir(folder))
    assert not {"codebook_hdcid.py", "quantizer_family_hdcid.py"} & set(os.listdir(folder))
    back = HDCIDForPreTraining.from_pretrained(folder)  # the package's code
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    encoder = HDCIDModel.from_pretrained(folder).eval()
    x = make_batch(model.config, seed=9)["video"]
    assert torch.equal(encoder.encode("video", x).unified, model.hdcid.encode("video", x).unified)
    result = run_remote(model, folder, tmp_path)  # the folder's own (release) code
    assert result == {**result, "pre_class": "HDCIDForPreTraining", "equal": True, "codebook_equal": True}
    assert {"quantization_hdcid", "quantizers_hdcid"} <= set(result["modules"])
    assert "codebook_hdcid" not in result["modules"]


def test_remote_code_loads_in_a_fresh_process_without_the_package(tmp_path):
    model = trained_tiny(tmp_path / "ckpt").eval()
    result = run_remote(model, tmp_path / "ckpt", tmp_path)
    assert {"codebook_hdcid", "quantizer_family_hdcid"} <= set(result["modules"])
    assert result["class"].startswith("transformers_modules.") and result["class"].endswith("HDCIDModel")
    assert result == {**result, "pre_class": "HDCIDForPreTraining", "equal": True, "codebook_equal": True}
