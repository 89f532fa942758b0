"""torch.hub entry points: torch.hub.load(repo_dir, "hifigan", name="universal-v1", source="local")."""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "librosa", "soundfile", "soxr"]

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:  # a checkout used without `pip install`
    sys.path.insert(0, str(_SRC))


def hifigan(name: str = "universal-v1", device: str = "cpu", precision: str = "fp32", **options):
    """A ready hifigan.Vocoder for a registered model name or a checkpoint path."""
    from hifigan import Vocoder

    return Vocoder.from_pretrained(name, device=device, precision=precision, **options)


def nvidia_hifigan(pretrained: bool = True, name: str = "lj-v1", device: str = "cpu", **_):
    """DeepLearningExamples-shaped entry: (generator, train_setup, denoiser).

    generator: torch.nn.Module, mel (B, n_mels, T) -> audio (B, 1, T * hop), weight norm folded;
    train_setup: DLE's audio settings dict; denoiser: module called as denoiser(audio, strength).
    With pretrained=False the generator has random weights of the named model's architecture.
    """
    from hifigan.checkpoint import build_generator
    from hifigan.denoiser import Denoiser
    from hifigan.formats.dle import train_setup
    from hifigan.layers import fold_weight_norm

    vocoder = hifigan(name, device=device)
    generator, config = vocoder.generator, vocoder.config
    if not pretrained:
        generator = fold_weight_norm(build_generator(config, weight_norm=True)).to(device).eval()
    mel = config.mel
    denoiser = Denoiser(generator, n_mels=mel.n_mels, n_fft=mel.n_fft, hop_length=mel.hop_length,
                        win_length=mel.win_length)
    return generator, train_setup(config), denoiser
