"""Entry points behind `hifigan train`, `hifigan finetune` and `hifigan export-generator`."""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..checkpoint import Checkpoint, NATIVE_FORMAT, read_native, safe_load, weight_normed_state, write_native
from ..config import ModelConfig, TrainConfig
from ..data import Example
from ..errors import CheckpointError, ConfigError
from ..hostmemory import tune_heap_for_training
from .distributed import init_from_env, shutdown
from .trainer import STOP_SIGNALS, RunState, Trainer


class TrainingInterrupted(KeyboardInterrupt):
    """A signal stopped the run after a whole step, with a checkpoint there: `--resume` continues exactly."""

    def __init__(self, signum: int, step: int, run_dir: Path) -> None:
        super().__init__(f"{signal.Signals(signum).name}: stopped after step {step} with a checkpoint in "
                         f"{run_dir / 'checkpoints'}; continue with --resume")
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer) -> Iterator[list[int]]:
    """SIGINT and SIGTERM (Ctrl-C, a scheduler's preemption, torchrun's shutdown) ask `trainer` to stop
    after its current step; a second SIGINT interrupts at once. Yields the signals received."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
        yield received
        return

    def handler(signum, _frame) -> None:
        if signum == signal.SIGINT and received:
            raise KeyboardInterrupt
        received.append(signum)
        trainer.request_stop()

    previous = {stop_signal: signal.signal(stop_signal, handler) for stop_signal in STOP_SIGNALS}
    try:
        yield received
    finally:
        for stop_signal, old in previous.items():
            signal.signal(stop_signal, old)


def _fit(trainer: Trainer, stop_on_signals: bool) -> RunState:
    if not stop_on_signals:
        return trainer.fit()
    with _stop_on_signals(trainer) as received:
        state = trainer.fit()
    if trainer.stopped_on_request:  # under DDP a rank may stop for another rank's signal
        raise TrainingInterrupted(received[0] if received else signal.SIGTERM, state.step, trainer.run_dir)
    return state


def _tune_process(device: torch.device, tune_malloc: bool) -> None:
    """Process-wide settings for a training run. CPU: keep freed memory for reuse, in a heap of huge
    pages (hostmemory). CUDA:
    cuDNN times its convolution algorithms once per shape and keeps the fastest (the training shapes
    are fixed), as the reference's train.py sets."""
    if device.type == "cpu" and tune_malloc:
        tune_heap_for_training()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = sorted(Path(run_dir, "checkpoints").glob("train_*.pt"))
    return found[-1] if found else None


def _original_generator_in(folder: Path) -> Path | None:
    """The latest g_XXXXXXXX of an original authors' checkpoint folder (their train.py resumes from it)."""
    found = sorted(p for p in folder.glob("g_*") if p.name[2:].isdigit())
    return found[-1] if found else None


def _resume_file(resume: str | Path) -> str | Path:
    """What to resume from: an original authors' checkpoint folder means its latest g_ file (with the
    do_ file beside it); anything else (a run of ours, a file, a model name) as given."""
    path = Path(resume)
    if path.is_dir() and latest_checkpoint(path) is None:
        return _original_generator_in(path) or resume
    return resume


def _load_if_training(path: Path) -> dict[str, Any] | None:
    """The native training checkpoint at `path` (a run folder: its latest one), or None for other files."""
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path}: no checkpoints/train_*.pt (nor an original g_ file) to resume from")
        path = latest
    obj = safe_load(path)
    is_training = isinstance(obj, dict) and obj.get("format") == NATIVE_FORMAT and obj.get("kind") == "training"
    return obj if is_training else None


def _refuse_to_overwrite(run_dir: Path) -> None:
    """A new run would overwrite another run's checkpoints and append to its logs."""
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        raise ConfigError(f"{run_dir} already holds a run (latest checkpoint {latest.name}): pass --resume to "
                          "continue it, or choose another --run-dir")


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A native training checkpoint (a run folder means its latest one)."""
    obj = _load_if_training(Path(path))
    if obj is None:
        raise CheckpointError(f"{path}: not a hifigan training checkpoint")
    return obj


def _foreign(path: str | Path) -> Checkpoint:
    from ..formats import read
    from ..pretrained import resolve

    return read(resolve(path))[1]


def train(model: ModelConfig, train_config: TrainConfig, run_dir: str | Path, train_examples: Sequence[Example],
          valid_examples: Sequence[Example] = (), *, device: str = "cpu", resume: str | Path | None = None,
          init: str | Path | None = None, keep_optimizers: bool = False, lr_scale: float = 1.0,
          overrides: dict | None = None, mel_framing: str = "reference", progress: bool = True,
          tune_malloc: bool = True, stop_on_signals: bool = False) -> RunState:
    """Train (or fine-tune, with `init`) and return the final state; works under torchrun.

    resume: a run folder or native training checkpoint (continues exactly: its configs win, except
    `overrides` such as max_steps), or an original g_ / DLE generator file whose training half sits beside it,
    or an original authors' checkpoint folder (its latest g_ file, as their train.py resumes).
    init: a pretrained generator (any format or registered name) to start from; its discriminators and
    (with keep_optimizers, scaled by lr_scale) optimiser states come along when the checkpoint has them.
    tune_malloc: on CPU, keep freed memory for reuse, in a heap of huge pages (hostmemory); process-wide. On CUDA
    the run turns on torch.backends.cudnn.benchmark, as the reference does.
    stop_on_signals: SIGINT / SIGTERM stop the run after the current step, with a checkpoint, and raise
    TrainingInterrupted (a second SIGINT interrupts at once); main thread only.
    """
    dist, chosen = init_from_env(device)
    try:
        _tune_process(chosen, tune_malloc)
        resume = None if resume is None else _resume_file(resume)
        native = _load_if_training(Path(resume)) if resume is not None and Path(resume).exists() else None
        if native is not None:
            model = ModelConfig.from_dict(native["config"])
            train_config = TrainConfig.from_dict({**native["train_config"], **(overrides or {})})
        foreign = _foreign(init or resume) if native is None and (init or resume) else None
        if foreign is not None:
            model = foreign.config
            if resume is not None and init is None and foreign.training is None:
                warnings.warn(f"{resume} has no training state beside it (an original do_ or DLE discriminator "
                              "file): only the generator is resumed; discriminators, optimisers and the step "
                              "count start fresh", stacklevel=2)
        trainer = Trainer(model, train_config, run_dir, train_examples, valid_examples, device=chosen, dist=dist,
                          mel_framing=mel_framing, progress=progress)
        if resume is None:
            _refuse_to_overwrite(Path(run_dir))
        if native is not None:
            trainer.load(native)
        elif foreign is not None:
            trainer.load_pair(foreign.training, weight_normed_state(foreign.generator),
                              keep_optimizers=keep_optimizers or resume is not None, lr_scale=lr_scale)
        return _fit(trainer, stop_on_signals)
    finally:
        shutdown(dist)


def export_generator(source: str | Path, output: str | Path) -> Path:
    """The generator of a run folder or training checkpoint -> our release format."""
    write_native(read_native(read_training_checkpoint(source), str(source)), output)
    return Path(output)
