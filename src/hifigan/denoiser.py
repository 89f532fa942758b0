"""DLE-style bias denoiser: subtract the generator's own "silence" spectrum from its output.

The generator run on an all-zeros mel (1, n_mels, 88), as DeepLearningExamples does, gives a
faint stationary tone (the model's bias). The magnitude of the first STFT frame of that output
is the bias spectrum; denoising subtracts strength * bias from every frame's magnitude, clamps
at zero and inverts with the original phase. Typical strengths: 0.005 to 0.1.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .errors import InputError

BIAS_FRAMES = 88


class Denoiser(nn.Module):
    """audio (B, N) or (N,) -> denoised audio of the same shape; strength 0 returns the input as is."""

    def __init__(self, generator: Callable[[torch.Tensor], torch.Tensor], *, n_mels: int, n_fft: int = 1024, hop_length: int = 256,
                 win_length: int = 1024) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        # Any mel -> audio callable; a module's first parameter tells its device and dtype.
        parameter = next(generator.parameters(), None) if isinstance(generator, nn.Module) else None
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None else torch.float32
        self.register_buffer("window", torch.hann_window(win_length, device=device), persistent=False)
        with torch.inference_mode():
            bias_audio = generator(torch.zeros(1, n_mels, BIAS_FRAMES, device=device, dtype=dtype)).float().reshape(1, -1).to(device)
        bias = self._stft(bias_audio).abs()[0, :, 0]  # (n_fft // 2 + 1,): the first frame
        self.register_buffer("bias_spectrum", bias.clone(), persistent=False)

    def _stft(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, self.n_fft, hop_length=self.hop_length, win_length=self.window.numel(),
                          window=self.window, center=True, return_complex=True)

    def forward(self, audio: torch.Tensor, strength: float = 0.01) -> torch.Tensor:
        check_strength(strength)
        if strength == 0:
            return audio
        batch = audio.reshape(-1, audio.shape[-1]).float()
        spec = self._stft(batch.to(self.window.device))
        magnitude = torch.clamp(spec.abs() - strength * self.bias_spectrum[:, None], min=0.0)
        denoised = torch.istft(torch.polar(magnitude, spec.angle()), self.n_fft, hop_length=self.hop_length,
                               win_length=self.window.numel(), window=self.window, center=True,
                               length=batch.shape[-1])
        return denoised.reshape(audio.shape).to(audio.device, audio.dtype)


def check_strength(strength: float) -> None:
    if not isinstance(strength, (int, float)) or not math.isfinite(strength) or strength < 0:
        raise InputError(f"denoise strength must be a finite number >= 0, got {strength!r}")
