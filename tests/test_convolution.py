"""The channels-last GEMM convolutions (modeling/convolution_hdcid.py) against torch's own kernels.

Values, input gradients and weight gradients in float64 for every shape the video branch builds
(3x3 unpadded, 3x3 padded, 1x1; transposed 3x3 and 1x1), plus a brute-force loop for the transposed
convolution's scatter, the model's video encoder/decoder against the same modules run natively, and
the refusal of options the GEMM path does not implement."""

import pytest
import torch
import torch.nn.functional as F

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.data.synthetic import random_feature_batch
from hf_hdcid.modeling import convolution_hdcid
from hf_hdcid.modeling.convolution_hdcid import (
    ChannelsLastConv2d,
    ChannelsLastConvTranspose2d,
    conv2d_nhwc,
    conv_transpose2d_nhwc,
)

CONV_CASES = [(5, 7, 3, 0, 7, True), (6, 6, 3, 1, 3, False), (4, 9, 1, 0, 5, True), (3, 2, 3, 0, 3, False)]


@pytest.mark.parametrize("cin,cout,k,padding,size,bias", CONV_CASES)
def test_conv2d_nhwc_matches_conv2d_values_and_gradients(cin, cout, k, padding, size, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, size, size, cin, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    ours = conv2d_nhwc(x, w, b, padding)
    ref = F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=padding).permute(0, 2, 3, 1)
    assert ours.shape == ref.shape == (3, size + 2 * padding - k + 1, size + 2 * padding - k + 1, cout)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    inputs = (x, w) + ((b,) if bias else ())
    for ga, gb in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-11)


@pytest.mark.parametrize("cin,cout,k,size,bias", [(5, 7, 3, 3, True), (6, 4, 3, 5, False), (4, 9, 1, 7, True)])
def test_conv_transpose2d_nhwc_matches_conv_transpose2d(cin, cout, k, size, bias):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, size, size, cin, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cin, cout, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    ours = conv_transpose2d_nhwc(x, w, b)
    ref = F.conv_transpose2d(x.permute(0, 3, 1, 2), w, b).permute(0, 2, 3, 1)
    assert ours.shape == ref.shape == (2, size + k - 1, size + k - 1, cout)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    inputs = (x, w) + ((b,) if bias else ())
    for ga, gb in zip(torch.autograd.grad(ours, inputs, upstream), torch.autograd.grad(ref, inputs, upstream)):
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-11)


def test_conv_transpose2d_nhwc_is_the_scatter_by_brute_force():
    # y[n, p+i, q+j, o] += sum_c x[n, p, q, c] * w[c, o, i, j]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 3, 2, generator=g, dtype=torch.float64)
    w = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64)
    y = torch.zeros(1, 4, 5, 3, dtype=torch.float64)
    for p in range(2):
        for q in range(3):
            for i in range(3):
                for j in range(3):
                    y[0, p + i, q + j] += x[0, p, q] @ w[:, :, i, j]
    torch.testing.assert_close(conv_transpose2d_nhwc(x, w, None), y, rtol=0, atol=1e-12)


def test_modules_keep_conv_parameters_and_refuse_unsupported_options():
    conv = ChannelsLastConv2d(4, 6, 3, padding=1, bias=False)
    assert isinstance(conv, torch.nn.Conv2d) and conv.weight.shape == (6, 4, 3, 3) and conv.bias is None
    deconv = ChannelsLastConvTranspose2d(4, 6, 3)
    assert isinstance(deconv, torch.nn.ConvTranspose2d) and deconv.weight.shape == (4, 6, 3, 3)
    for kwargs in ({"stride": 2}, {"dilation": 2}, {"groups": 2}, {"padding_mode": "reflect", "padding": 1}):
        with pytest.raises(ValueError, match="stride 1, dilation 1, groups 1"):
            ChannelsLastConv2d(4, 6, 3, **kwargs)
    with pytest.raises(ValueError, match="padding 0 and output_padding 0"):
        ChannelsLastConvTranspose2d(4, 6, 3, padding=1)


def test_model_video_branch_equals_native_kernels(monkeypatch):
    """The whole model (video encoder + decoder) gives the same losses and gradients on the GEMM
    path as with torch's convolution kernels (float64, the tiny preset with a 3-layer video stack)."""
    config = HDCIDConfig.tiny()
    torch.manual_seed(0)
    model = HDCIDForPreTraining(config).double().train()
    batch = {m: x.double() for m, x in random_feature_batch(config, 4, torch.Generator().manual_seed(0)).items()}

    def run():
        torch.manual_seed(1)
        model.zero_grad(set_to_none=True)
        out = model(**batch, epoch=config.warm_start_epoch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and "video" in n}
        return out.loss.detach(), grads

    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss_gemm, grads_gemm = run()
    model.load_state_dict(state)  # the EMA codebook moved in the first call
    monkeypatch.setattr(convolution_hdcid, "use_gemm_convolution", lambda x: False)
    loss_native, grads_native = run()
    torch.testing.assert_close(loss_gemm, loss_native, rtol=1e-10, atol=0)
    assert any("convs" in n for n in grads_gemm) and any("deconvs" in n for n in grads_gemm)
    assert grads_gemm.keys() == grads_native.keys()
    for name in grads_gemm:
        torch.testing.assert_close(grads_gemm[name], grads_native[name], rtol=1e-9, atol=1e-12, msg=name)
