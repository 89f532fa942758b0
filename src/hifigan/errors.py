"""The small set of errors a user can cause; the CLI turns each into one line and exit code 2."""


class HifiganError(Exception):
    """Base class: a problem with the user's input, files or models, explained in one line."""


class ConfigError(HifiganError, ValueError):
    """A configuration that cannot describe a working model (e.g. upsample product != hop)."""


class InputError(HifiganError, ValueError):
    """A mel spectrogram or waveform of the wrong shape, type or content."""


class AudioFileError(HifiganError, OSError):
    """An audio or mel file that is missing, unreadable or of an unsupported type."""


class CheckpointError(HifiganError, ValueError):
    """A checkpoint that is truncated, foreign, unsafe or does not fit the model."""


class ModelNotFoundError(HifiganError, LookupError):
    """A model name that is not registered, or a registered model whose files are missing."""


class ExportError(HifiganError, RuntimeError):
    """An exported model that cannot be written, or whose outputs differ from PyTorch's."""
