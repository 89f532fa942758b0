"""HiFi-GAN neural vocoder: reference-exact models, checkpoints and inference."""

from .config import GENERATOR_PRESETS, GeneratorConfig, MelConfig, ModelConfig, TrainConfig, model_preset, preset
from .discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from .errors import AudioFileError, CheckpointError, ConfigError, HifiganError, InputError, ModelNotFoundError
from .generator import Generator
from .layers import fold_weight_norm
from .mel import SILENCE_LOG_MEL, MelSpectrogram
from .pretrained import PRETRAINED
from .vocoder import Vocoder

__version__ = "0.1.0"
__all__ = [
    "GENERATOR_PRESETS", "GeneratorConfig", "MelConfig", "ModelConfig", "TrainConfig", "model_preset", "preset",
    "MultiPeriodDiscriminator", "MultiScaleDiscriminator", "Generator", "fold_weight_norm",
    "MelSpectrogram", "SILENCE_LOG_MEL", "PRETRAINED", "Vocoder",
    "HifiganError", "AudioFileError", "CheckpointError", "ConfigError", "InputError", "ModelNotFoundError",
]
