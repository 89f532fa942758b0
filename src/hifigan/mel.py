"""The one log-mel front end used by data, losses and inference (the reference framing).

Framing: reflect-pad (n_fft - hop) // 2 samples on each side, STFT with center=False and a
periodic Hann window, so a signal of N samples gives floor(N / hop) frames and frame f covers
output samples f*hop .. (f+1)*hop of the generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import InputError

# log(1e-5): the value of silence, and the value to pad mel batches with.
LOG_MEL_FLOOR = 1e-5
SILENCE_LOG_MEL = math.log(LOG_MEL_FLOOR)


class MelSpectrogram(nn.Module):
    """Waveform (B, N) or (N,) -> natural-log mel magnitude (B, n_mels, N // hop_length).

    The filterbank is librosa's Slaney-normalised mel; it and the window are buffers, so the
    module follows `.to(device)` and is built once.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        n_fft: int = 1024,
        win_length: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = 8000.0,
    ) -> None:
        super().__init__()
        import librosa

        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.padding = (n_fft - hop_length) // 2
        filterbank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
        self.register_buffer("filterbank", torch.from_numpy(filterbank).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length, periodic=True), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a signal of `num_samples` samples."""
        return (num_samples + 2 * self.padding - self.n_fft) // self.hop_length + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, N) or (N,), float in [-1, 1] -> log-mel (B, n_mels, frames) or (n_mels, frames)."""
        squeeze = audio.dim() == 1
        if audio.dim() not in (1, 2):
            raise InputError(f"audio must be (samples,) or (batch, samples), got shape {tuple(audio.shape)}")
        if audio.shape[-1] < max(self.hop_length, self.padding + 1):
            raise InputError(
                f"audio of {audio.shape[-1]} samples is too short; at least {max(self.hop_length, self.padding + 1)} are needed"
            )
        batch = audio.unsqueeze(0) if squeeze else audio
        # The STFT runs in fp32 even under autocast: the log floor needs the precision.
        batch = nn.functional.pad(batch.float().unsqueeze(1), (self.padding, self.padding), mode="reflect")
        spec = torch.stft(
            batch.squeeze(1),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.window.numel(),
            window=self.window,
            center=False,
            return_complex=True,
        )
        # sqrt(re^2 + im^2 + 1e-9) as in the reference, not |spec|: keeps gradients finite at 0.
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.log(torch.clamp(self.filterbank @ magnitude, min=LOG_MEL_FLOOR))
        return mel.squeeze(0) if squeeze else mel
