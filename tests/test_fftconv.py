"""FFT-block convolution against torch's direct Conv1d."""

import pytest
import torch
from torch.nn import functional as F

from hifigan.fftconv import FFTConv1d


@pytest.mark.parametrize("batch,channels,length,kernel,dilation,block", [
    (1, 16, 100, 7, 1, 32), (2, 16, 37, 11, 5, 64), (3, 8, 5, 11, 3, 16), (1, 4, 1, 7, 3, 16),
    (2, 12, 1000, 3, 2, 16), (1, 8, 300, 7, 12, 32), (1, 6, 64, 11, 1, 64)])
def test_matches_direct_convolution(batch, channels, length, kernel, dilation, block):
    generator = torch.Generator().manual_seed(length)
    weight = torch.randn(channels + 3, channels, kernel, generator=generator)
    bias = torch.randn(channels + 3, generator=generator)
    x = torch.randn(batch, channels, length, generator=generator)
    expected = F.conv1d(x, weight, bias, padding=(kernel - 1) * dilation // 2, dilation=dilation)
    conv = FFTConv1d(weight, bias, dilation=dilation, block=block)
    for layout, group in ((torch.contiguous_format, None), (torch.channels_last, 3)):
        if group:  # groups of 3 blocks, split across phases and batch items
            conv.samples_per_group = group * conv.valid
        out = conv(x.unsqueeze(2).contiguous(memory_format=layout))
        assert out.shape == (batch, channels + 3, 1, length)
        assert out.is_contiguous(memory_format=torch.channels_last) or batch > 1
        scale = float(expected.abs().max())
        assert float((out.squeeze(2) - expected).abs().max()) < 1e-5 * scale


def test_refuses_kernels_it_cannot_center():
    with pytest.raises(ValueError, match="odd kernel shorter than an even block"):
        FFTConv1d(torch.zeros(2, 2, 4), torch.zeros(2), dilation=1, block=16)
    with pytest.raises(ValueError, match="odd kernel shorter than an even block"):
        FFTConv1d(torch.zeros(2, 2, 17), torch.zeros(2), dilation=1, block=16)
