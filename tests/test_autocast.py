"""Autocast on every CPU: the LSTMs (text BiLSTM, CPC contexts) fall back to float32 where the CPU has
no reduced-precision oneDNN LSTM (modeling/recurrent_hdcid.py). These tests force the fallback with
HF_HDCID_LSTM_AUTOCAST=float32, so a green run on an AVX-512 machine also covers AVX2-only CPUs."""

import pytest
import torch
from torch import nn

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel
from hf_hdcid.modeling import recurrent_hdcid
from hf_hdcid.modeling.recurrent_hdcid import LSTM_AUTOCAST_ENV, AutocastLSTM, lstm_runs_in_autocast_dtype

from conftest import make_batch


def _pair(seed: int = 0, **kwargs):
    """An AutocastLSTM and a plain nn.LSTM with the same weights, and an input [3, 5, 6]."""
    torch.manual_seed(seed)
    kwargs = {"input_size": 6, "hidden_size": 4, "num_layers": 2, "batch_first": True, "bidirectional": True,
              **kwargs}
    ours, plain = AutocastLSTM(**kwargs), nn.LSTM(**kwargs)
    plain.load_state_dict(ours.state_dict())
    return ours, plain, torch.randn(3, 5, kwargs["input_size"])


def test_autocast_lstm_has_the_state_dict_of_nn_lstm():
    ours, plain, x = _pair()
    assert list(ours.state_dict()) == list(plain.state_dict())
    assert torch.equal(ours(x)[0], plain(x)[0])  # outside autocast it is nn.LSTM


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_forced_fallback_runs_in_float32_and_returns_the_autocast_dtype(monkeypatch, dtype):
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, "float32")
    ours, plain, x = _pair()
    seen = []
    original = nn.LSTM.forward

    def spy(self, input, hx=None):
        seen.append((torch.is_autocast_enabled("cpu"), input.dtype))
        return original(self, input, hx)

    monkeypatch.setattr(nn.LSTM, "forward", spy)
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        out, (h, c) = ours(x)
    assert seen == [(False, torch.float32)]  # the LSTM itself ran without autocast, in float32
    assert out.dtype == h.dtype == c.dtype == dtype  # what the rest of the graph sees
    reference, (h_ref, c_ref) = original(plain, x.detach())
    assert torch.equal(out, reference.to(dtype)) and torch.equal(h, h_ref.to(dtype)) and torch.equal(c, c_ref.to(dtype))
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())


def test_native_decision_leaves_the_lstm_to_autocast(monkeypatch):
    """Where the device has the kernel (CUDA's cuDNN; AVX-512 CPUs) the LSTM runs under autocast as
    nn.LSTM does; the call is recorded, not run, so this holds on any CPU."""
    monkeypatch.setattr(recurrent_hdcid, "_probe", lambda device, dtype: True)
    seen = []

    def fake_forward(self, input, hx=None):
        seen.append((torch.is_autocast_enabled("cpu"), input.dtype))
        out = torch.zeros(*input.shape[:2], 8, dtype=torch.bfloat16)
        return out, (out[:, :1], out[:, :1])

    monkeypatch.setattr(nn.LSTM, "forward", fake_forward)
    ours, _, x = _pair()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours(x)
    assert seen == [(True, torch.float32)]  # untouched input, autocast still on


def test_fallback_keeps_a_float64_lstm_in_float64(monkeypatch):
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, "float32")
    ours, plain, x = _pair()
    ours.double(), plain.double()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ours(x)[0]
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, plain(x.double())[0].to(torch.bfloat16))


def test_the_decision_matches_what_the_cpu_can_do_and_is_taken_once(monkeypatch):
    monkeypatch.delenv(LSTM_AUTOCAST_ENV, raising=False)
    recurrent_hdcid._probe.cache_clear()
    supported = lstm_runs_in_autocast_dtype("cpu", torch.bfloat16)
    for _ in range(3):
        assert lstm_runs_in_autocast_dtype(torch.device("cpu"), torch.bfloat16) is supported
    info = recurrent_hdcid._probe.cache_info()
    assert info.misses == 1 and info.hits == 3
    _, plain, x = _pair()  # a bare nn.LSTM under autocast works exactly where the probe said so
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain(x)
        bare_works = True
    except RuntimeError:
        bare_works = False
    assert bare_works is supported
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, "native")
    assert lstm_runs_in_autocast_dtype("cpu", torch.bfloat16) is True
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, "float32")
    assert lstm_runs_in_autocast_dtype("cpu", torch.bfloat16) is False


def test_a_bad_override_names_the_variable(monkeypatch):
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, "fp8")
    ours, _, x = _pair()
    with pytest.raises(ValueError, match=r"HF_HDCID_LSTM_AUTOCAST: expected one of \('auto', 'float32', 'native'\), got 'fp8'"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours(x)
    assert ours(x)[0].dtype == torch.float32  # outside autocast the variable is not read


@pytest.mark.parametrize("mode", ["auto", "float32"])
def test_model_encodes_under_autocast_with_the_same_codes_dtype_on_every_path(monkeypatch, mode):
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, mode)
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny()
    model = HDCIDModel(cfg).eval()
    batch = make_batch(cfg)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode("text", batch["text"])
    assert out.semantic[0].dtype == torch.bfloat16 and out.quantized[0].dtype == torch.float32
    assert model.text_encoder.lstm.weight_ih_l0.dtype == torch.float32


@pytest.mark.parametrize("mode", ["auto", "float32"])
def test_pretraining_cpc_lstms_run_under_autocast(monkeypatch, mode):
    """Both LSTM users, the text BiLSTM and the per-modality CPC context LSTMs, train under autocast."""
    monkeypatch.setenv(LSTM_AUTOCAST_ENV, mode)
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).train()
    assert isinstance(model.cpc[0].context["audio"], AutocastLSTM)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.compute_losses(make_batch(cfg), epoch=0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.cpc[0].context["video"].parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_bf16_on_a_cpu_without_bf16_kernels_warns_once_with_the_figure(monkeypatch):
    from hf_hdcid.training import setup as loop  # the run setup owns the check

    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"mixed_precision: 'bf16'.*21x slower.*mixed_precision='no'"):
        message = loop.warn_if_slow_bf16("bf16", torch.device("cpu"))
    assert message is not None and torch.backends.cpu.get_cpu_capability() in message
    assert loop.warn_if_slow_bf16("no", torch.device("cpu")) is None
    assert loop.warn_if_slow_bf16("bf16", torch.device("cuda")) is None  # CUDA has bf16 kernels
    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    assert loop.warn_if_slow_bf16("bf16", torch.device("cpu")) is None


def test_cpu_bf16_detection_matches_torch_capability():
    from hf_hdcid.training.setup import cpu_has_fast_bf16

    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_has_fast_bf16() == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if capability in ("AVX2", "DEFAULT"):
        assert not cpu_has_fast_bf16()
