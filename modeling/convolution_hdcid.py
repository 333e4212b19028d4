"""Channels-last convolutions for the small video maps (7x7 -> 5x5 -> 3x3) of the H-DCID video branch.

The video encoder and decoder run 3x3 convolutions with 512-2304 channels on maps of 3x3 to 7x7
positions. oneDNN's direct convolution backward reaches about half of the CPU's GEMM throughput on
these shapes (BENCHMARKS.md, issue 15), so on the CPU they run as one GEMM each:

* convolution: the k x k patches of the channels-last map are gathered (``Tensor.unfold``, an
  im2col) into ``[N*Ho*Wo, Cin*k*k]`` and multiplied by the weight viewed as ``[Cout, Cin*k*k]``;
* transposed convolution (stride 1): each input position is multiplied by the weight viewed as
  ``[Cin, Cout*k*k]`` and the k x k contributions are summed into the larger map (``F.fold``, a
  col2im), which costs exactly the scatter's multiply-adds, not those of a zero-padded convolution.

Both keep the parameters, their shapes and their names of ``nn.Conv2d`` / ``nn.ConvTranspose2d``
(checkpoints and the original converter are unaffected) and compute the same function up to float
rounding. On other devices (CUDA: cuDNN is fast here) the native kernels run on a channels-last view.
Only stride 1, dilation 1, groups 1 and zero padding are supported, which is all the model builds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelsLastConv2d", "ChannelsLastConvTranspose2d", "conv2d_nhwc", "conv_transpose2d_nhwc",
           "use_gemm_convolution"]


def use_gemm_convolution(x: torch.Tensor) -> bool:
    """The GEMM formulation is used on the CPU; elsewhere the native (cuDNN) kernels."""
    return x.device.type == "cpu"


def conv2d_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Stride-1 convolution of a channels-last map as one GEMM (im2col).

    x [N, H, W, Cin], weight [Cout, Cin, k, k] -> [N, H + 2p - k + 1, W + 2p - k + 1, Cout]."""
    cout, cin, k, _ = weight.shape
    if k == 1 and padding == 0:
        out = x @ weight.view(cout, cin).t()  # [N, H, W, Cout]
        return out if bias is None else out + bias
    if padding:
        x = F.pad(x, (0, 0, padding, padding, padding, padding))  # zero-pad H and W
    n, h, w, _ = x.shape
    ho, wo = h - k + 1, w - k + 1
    patches = x.unfold(1, k, 1).unfold(2, k, 1)  # [N, Ho, Wo, Cin, k, k] (a view)
    cols = patches.reshape(n * ho * wo, cin * k * k)  # [N*Ho*Wo, Cin*k*k]: weight's (Cin, kh, kw) order
    weight_2d = weight.reshape(cout, cin * k * k)
    out = cols @ weight_2d.t() if bias is None else torch.addmm(bias, cols, weight_2d.t())
    return out.view(n, ho, wo, cout)


def conv_transpose2d_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Stride-1, unpadded transposed convolution of a channels-last map as one GEMM + col2im.

    x [N, H, W, Cin], weight [Cin, Cout, k, k] -> [N, H + k - 1, W + k - 1, Cout]."""
    cin, cout, k, _ = weight.shape
    n, h, w, _ = x.shape
    if k == 1:
        out = x @ weight.view(cin, cout)  # [N, H, W, Cout]
        return out if bias is None else out + bias
    cols = x.reshape(n, h * w, cin) @ weight.reshape(cin, cout * k * k)  # [N, H*W, Cout*k*k]
    # fold sums the k x k block of each input position into the output map: [N, Cout, H+k-1, W+k-1]
    out = F.fold(cols.transpose(1, 2), (h + k - 1, w + k - 1), kernel_size=k)
    out = out.permute(0, 2, 3, 1)  # [N, H+k-1, W+k-1, Cout] (a channels-last view)
    return out if bias is None else out + bias


def _check_supported(module: nn.Module) -> None:
    if (module.stride != (1, 1) or module.dilation != (1, 1) or module.groups != 1
            or module.padding_mode != "zeros" or module.kernel_size[0] != module.kernel_size[1]
            or len(set(module.padding)) != 1):
        raise ValueError(
            f"{type(module).__name__} supports square kernels, stride 1, dilation 1, groups 1 and equal "
            f"zero padding; got kernel {module.kernel_size}, stride {module.stride}, padding "
            f"{module.padding}, dilation {module.dilation}, groups {module.groups}")


class ChannelsLastConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters) on channels-last maps: [N, H, W, Cin] -> [N, Ho, Wo, Cout]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_supported(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_gemm_convolution(x):
            return conv2d_nhwc(x, self.weight, self.bias, self.padding[0])
        out = F.conv2d(x.permute(0, 3, 1, 2), self.weight, self.bias, padding=self.padding)
        return out.permute(0, 2, 3, 1)


class ChannelsLastConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters) on channels-last maps: [N, H, W, Cin] -> [N, H+k-1, W+k-1, Cout]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_supported(self)
        if self.padding != (0, 0) or self.output_padding != (0, 0):
            raise ValueError(f"ChannelsLastConvTranspose2d supports padding 0 and output_padding 0; got "
                             f"padding {self.padding}, output_padding {self.output_padding}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_gemm_convolution(x):
            return conv_transpose2d_nhwc(x, self.weight, self.bias)
        out = F.conv_transpose2d(x.permute(0, 3, 1, 2), self.weight, self.bias)
        return out.permute(0, 2, 3, 1)
