"""The HiFi-GAN training loop: one discriminator step and one generator step per optimiser step.

Reference recipe (REFERENCE.md): LSGAN losses, feature matching and 45 x mel L1 (LOSS_WEIGHTS),
AdamW(0.8, 0.99, weight decay 0.01), exponential LR decay. Additions: gradient accumulation
(no gradient sync on accumulation micro-steps), bf16/fp16 autocast with separate gradient
scalers, DDP through torchrun, exact resume, a non-finite-loss guard, JSON-lines and
TensorBoard logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import signal
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..checkpoint import NATIVE_FORMAT, NATIVE_VERSION, build_generator, save_checkpoint
from ..config import ModelConfig, TrainConfig
from ..data import Example, SegmentDataset, collate
from ..device import cpu_bf16_slower_than_fp32, cpu_bf16_supported
from ..discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator, frozen_weights
from ..errors import CheckpointError, ConfigError, HifiganError, InputError
from ..layers import spectral_norm_vectors
from ..losses import LOSS_WEIGHTS, discriminator_loss, generator_loss
from ..mel import MelSpectrogram
from .distributed import DistInfo, barrier, mean_across

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # stop a run after its step (train.run); loader workers ignore them
log = logging.getLogger(__name__)


class TrainingDiverged(HifiganError, RuntimeError):
    """Too many consecutive non-finite losses."""


@contextlib.contextmanager
def _frozen(modules):
    """Temporarily stop gradients from accumulating in the modules' parameters."""
    parameters = [p for module in modules for p in module.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def _split(outputs, count: int):
    """Discriminator outputs of cat([real, fake]) -> (real outputs, fake outputs)."""
    real, fake = [], []
    for logits, maps in outputs:
        real.append((logits[:count], [m[:count] for m in maps]))
        fake.append((logits[count:], [m[count:] for m in maps]))
    return real, fake


IMPLEMENTATION_FLAGS = ("fused", "foreach")  # how an optimiser runs its update, not what it computes


def _load_foreign_optimizer(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load another implementation's optimiser state (hyperparameters, moments, steps) but keep how
    this run's optimiser updates: the original's torch 1.x AdamW state has no `fused` key, and
    loading it as it is would turn the fused update into torch's default (on the CPU the
    per-parameter loop: both optimisers' steps took 177 ms that way against 58 fused, v1)."""
    sizes = [len(group["params"]) for group in state["param_groups"]]
    if sizes != [len(group["params"]) for group in optimizer.param_groups]:
        raise CheckpointError(f"the checkpoint's optimiser state covers {sum(sizes)} parameters, "
                              f"this model has {sum(len(g['params']) for g in optimizer.param_groups)}")
    groups = [{**saved, **{flag: ours[flag] for flag in IMPLEMENTATION_FLAGS}}
              for saved, ours in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups})  # with `fused`, steps go to the params' device


def _warn_if_slow_on_cpu(precision: str) -> None:
    """Reduced precisions that train slower than fp32 on this CPU (measured with torch 2.13)."""
    if precision == "fp16":
        # An AVX512-FP16 Xeon, batch 2: the reference MSD's conv backward passes took 2.0-8.2 s
        # each in fp16 against 0.02-0.12 s in fp32 or bf16 (all but the first layer).
        reason = "fp16 training on the CPU runs torch's slow fp16 convolution backward (60-190x fp32)"
    elif precision == "bf16" and not cpu_bf16_supported():
        reason = "this CPU has no native bf16 (AVX512-BF16 or AMX): emulated, it ran 0.4-0.5 frames/s on an AVX2 VM"
    elif precision == "bf16" and cpu_bf16_slower_than_fp32():
        # benchmarks/train_throughput.py on such a Xeon: v1 10.9 vs 14.6 frames/s, v3 15.4 vs 18.0.
        reason = "bf16 trains slower than fp32 on this CPU (Intel AVX512-BF16 without AMX)"
    else:
        return
    warnings.warn(f"{reason}; precision fp32 is faster here", stacklevel=3)


class _EpochKeys(Sampler):
    """The (epoch, index) keys of the items left in the current epoch, refilled by the trainer before
    each pass over its loader (a sampler is iterated in the main process)."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def _leave_signals_to_parent(_worker_id: int) -> None:
    """Loader workers ignore SIGINT and SIGTERM, which a terminal's Ctrl-C and schedulers (SLURM) send
    to the whole process group: a worker killed mid-step made torch raise in the trainer's step. The
    trainer stops after its step and shuts its workers down (they also exit if it dies)."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)


def _nothing_loaded(what: str) -> InputError:
    return InputError(f"{what} could be loaded: every training clip was skipped (see the messages above)")


@dataclasses.dataclass
class RunState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # optimiser steps done in the current epoch (for exact resume)
    bad_steps: int = 0       # consecutive steps skipped for a non-finite loss
    skipped_total: int = 0   # steps that trained nothing: a non-finite loss or no loadable clip


class Trainer:
    def __init__(self, model: ModelConfig, train: TrainConfig, run_dir: str | Path, train_examples: Sequence[Example],
                 valid_examples: Sequence[Example] = (), *, device: torch.device | str = "cpu",
                 dist: DistInfo = DistInfo(), mel_framing: str = "reference", progress: bool = True) -> None:
        self.model, self.train, self.dist = model, train, dist
        self.device, self.run_dir, self.progress = torch.device(device), Path(run_dir), progress and dist.is_main
        self.micro_batch = self._micro_batch_size()
        torch.manual_seed(train.seed)
        self.generator = build_generator(model, weight_norm=True).to(self.device).train_channels_last()
        self.mpd = MultiPeriodDiscriminator(periods=train.mpd_periods, channels=train.mpd_channels).to(self.device)
        self.msd = MultiScaleDiscriminator(channels=train.msd_channels, groups=train.msd_groups).to(self.device)
        self.G, self.MPD, self.MSD = (self._wrap(m) for m in (self.generator, self.mpd, self.msd))
        # The fused AdamW kernel (CPU and CUDA) updates all parameters in one pass: 7x faster than
        # the per-parameter loop for the discriminators' 70 M parameters on this CPU (45 vs 330 ms).
        adam = dict(lr=train.learning_rate, betas=(train.adam_b1, train.adam_b2), weight_decay=train.weight_decay,
                    fused=self.device.type in ("cpu", "cuda"))
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), **adam)
        # The reference's parameter order (MSD then MPD): its optimiser states load unchanged.
        self.optim_d = torch.optim.AdamW(itertools.chain(self.msd.parameters(), self.mpd.parameters()), **adam)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma=train.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma=train.lr_decay)
        if self.device.type == "cpu":
            _warn_if_slow_on_cpu(train.precision)
        fp16 = train.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        mel_settings = dataclasses.asdict(model.mel)
        self.input_mel = MelSpectrogram(**mel_settings).to(self.device)
        self.loss_mel = MelSpectrogram(**{**mel_settings, "f_max": None}).to(self.device)
        data = dict(sample_rate=model.mel.sample_rate, hop_length=model.mel.hop_length, n_mels=model.mel.n_mels,
                    segment_size=train.segment_size, mel_framing=mel_framing, seed=train.seed)
        self.train_set = SegmentDataset(train_examples, training=True, **data)
        self.valid_set = SegmentDataset(valid_examples, training=False, **data)
        self.state = RunState()
        self.loaded_steps = 0  # steps whose batches loaded (in this process's lifetime)
        self.stop_requested = False  # set by request_stop (a signal handler): stop after the current step
        self.stopped_on_request = False
        self._keys, self._train_loader = _EpochKeys(), None
        self._writer = None

    # ---- setup -------------------------------------------------------------------------------
    def _micro_batch_size(self) -> int:
        parts = self.dist.world_size * self.train.grad_accum
        if self.train.batch_size % parts:
            raise ConfigError(f"batch size {self.train.batch_size} is not divisible by processes x grad_accum = {parts}")
        return self.train.batch_size // parts

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.dist.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.train.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def _micro_batches(self, batches: list[dict]):
        """Yields (index, batch). Spectral norm advances its power iteration (buffers _u, _v) on
        every training forward; before each accumulation micro-step after the first they are put
        back where this optimiser step started, so every micro-step sees the vectors one batch N
        times larger sees, and all end where that batch ends."""
        vectors = spectral_norm_vectors(self.msd)
        start = [vector.clone() for vector in vectors]
        for i, batch in enumerate(batches):
            if i:
                with torch.no_grad():
                    for vector, value in zip(vectors, start):
                        vector.copy_(value)
            yield i, batch

    def _no_sync(self, modules, skip: bool):
        """No gradient all-reduce on accumulation micro-steps (DDP only)."""
        if not (skip and self.dist.enabled):
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for module in modules:
            stack.enter_context(module.no_sync())
        return stack

    # ---- one optimiser step ------------------------------------------------------------------
    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        real = batch["audio"].to(self.device).unsqueeze(1)
        mel = batch["mel"].to(self.device) if batch["mel"] is not None else self.input_mel(real.squeeze(1))
        return real, mel

    def d_step(self, batches: list[dict]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Accumulate the discriminator loss over micro-batches; returns the loss and the fakes (when reusable)."""
        self.optim_d.zero_grad(set_to_none=True)
        count, total, fakes = len(batches), torch.zeros((), device=self.device), []
        for i, batch in self._micro_batches(batches):
            real, mel = self._inputs(batch)
            with self._autocast(), torch.set_grad_enabled(count == 1):
                fake = self.G(mel)  # with accumulation the generator step recomputes it with a graph
            fakes.append(fake)
            with self._no_sync((self.MPD, self.MSD), skip=i < count - 1), self._autocast():
                both = torch.cat([real, fake.detach().to(real.dtype)])
                # Outputs are not kept past their loss term (no feature maps alive in the backward
                # pass). The MSD runs real, then generated audio: its power iteration as in the reference.
                loss = discriminator_loss(*_split(self.MPD(both), len(real)))
                msd = self.MSD(both, parts=2, feature_maps=False)  # the loss reads only logits
                loss = (loss + discriminator_loss(*_split(msd, len(real)))) / count
            self.scaler_d.scale(loss).backward()
            total = total + loss.detach().float()
        return total, fakes if count == 1 else []

    def g_step(self, batches: list[dict], fakes: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        self.optim_g.zero_grad(set_to_none=True)
        count, total, terms_sum = len(batches), torch.zeros((), device=self.device), {}
        for i, batch in self._micro_batches(batches):
            real, mel = self._inputs(batch)
            with self._no_sync((self.G,), skip=i < count - 1):
                with self._autocast():
                    fake = fakes[i] if fakes else self.G(mel)
                    real_out, fake_out = self._discriminate_for_generator(real, fake)
                with torch.autocast(self.device.type, enabled=False):  # the loss mel in fp32
                    real_mel, fake_mel = self.loss_mel(real.squeeze(1).float()), self.loss_mel(fake.squeeze(1).float())
                loss, terms = generator_loss(real_out, fake_out, real_mel, fake_mel, LOSS_WEIGHTS)
                self.scaler_g.scale(loss / count).backward()
            total = total + loss.detach().float() / count
            for name, value in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + value.detach().float() / count
        return total, terms_sum

    def _discriminate_for_generator(self, real: torch.Tensor, fake: torch.Tensor):
        """Discriminator outputs for the generator loss. Real audio runs without a graph (its feature
        maps are targets) and the discriminators' weights are frozen, so the backward pass computes
        only the gradients that reach the generator; the reference also computes weight gradients
        here and throws them away."""
        real_out, fake_out = [], []
        discriminators = (self.mpd, self.msd)
        # Both passes share one normalised copy of each weight in the dtype the convs compute in (in fp32
        # on the CPU, weight norm's v and g / ||v||).
        with _frozen(discriminators), frozen_weights(discriminators, AUTOCAST_DTYPES.get(self.train.precision)):
            for d in discriminators:  # the unwrapped modules: no gradient reaches their weights, nothing to sync
                with torch.no_grad():
                    real_out += d(real)
                fake_out += d(fake.to(real.dtype))
        return real_out, fake_out

    def _apply(self, optimizer, scaler, parameters) -> None:
        if self.train.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, self.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()

    def _finite(self, *losses: torch.Tensor) -> bool:
        flag = torch.tensor(float(all(torch.isfinite(loss).item() for loss in losses)), device=self.device)
        if self.dist.enabled:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def train_step(self, batches: list[dict]) -> dict | None:
        """One optimiser step for D then G over `grad_accum` micro-batches; None if skipped."""
        d_loss, fakes = self.d_step(batches)
        if not self._finite(d_loss):
            return self._skip("discriminator")
        self._apply(self.optim_d, self.scaler_d, itertools.chain(self.msd.parameters(), self.mpd.parameters()))
        g_loss, terms = self.g_step(batches, fakes)
        if not self._finite(g_loss):
            return self._skip("generator")
        self._apply(self.optim_g, self.scaler_g, self.generator.parameters())
        self.state.bad_steps = 0
        if self.train.lr_decay_every == "step":
            self._decay_learning_rates()
        return {"loss_d": d_loss, "loss_g": g_loss, **terms}

    def _decay_learning_rates(self) -> None:
        # An fp16 scaler skips the optimiser step while its scale overflows (the first steps of a
        # run); torch then warns that the scheduler stepped first, which is intended here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.sched_g.step()
            self.sched_d.step()

    def _skip(self, which: str) -> None:
        self.optim_d.zero_grad(set_to_none=True)
        self.optim_g.zero_grad(set_to_none=True)
        self.state.bad_steps += 1
        self.state.skipped_total += 1
        if self.state.bad_steps > self.train.max_bad_steps:
            raise TrainingDiverged(
                f"{self.state.bad_steps} consecutive steps had a non-finite {which} loss; stopped at step "
                f"{self.state.step}. The last good checkpoint is in {self.run_dir / 'checkpoints'}; try a lower "
                "learning rate, --grad-clip, or fp32")
        return None

    # ---- the loop ----------------------------------------------------------------------------
    def _epoch_batches(self):
        """Micro-batches of the current epoch from where the last optimiser step stopped."""
        order = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                   shuffle=True, seed=self.train.seed, drop_last=True)
        order.set_epoch(self.state.epoch)
        indices = list(order)
        self.steps_per_epoch = len(indices) // (self.train.grad_accum * self.micro_batch)
        start = self.state.batch_in_epoch * self.train.grad_accum * self.micro_batch
        self._keys.keys = [(self.state.epoch, index) for index in indices[start:]]
        return iter(self._loader())

    def _loader(self) -> DataLoader:
        """One loader for the run. Its workers persist: a worker forked anew each epoch shares the
        trainer's heap, and the next step then copied every page it wrote (copy-on-write): the first
        step of each epoch took 11-14 s instead of 2 (V1, batch 2, 2 workers, a 2-core CPU)."""
        if self._train_loader is None:
            workers = self.train.num_workers
            self._train_loader = DataLoader(self.train_set, batch_size=self.micro_batch, sampler=self._keys,
                                            drop_last=True, collate_fn=collate, num_workers=workers,
                                            persistent_workers=workers > 0, worker_init_fn=_leave_signals_to_parent)
        return self._train_loader

    def _done(self) -> bool:
        t = self.train
        return self.stopped_on_request or (t.max_steps is not None and self.state.step >= t.max_steps) or (
            t.max_epochs is not None and self.state.epoch >= t.max_epochs)

    def request_stop(self) -> None:
        """Stop after the current optimiser step, with a checkpoint (safe to call from a signal handler)."""
        self.stop_requested = True

    def _agree_on_stop(self) -> None:
        """Whether any process was asked to stop: all stop after the same step (one all-reduce)."""
        flag = torch.tensor(float(self.stop_requested), device=self.device)
        if self.dist.enabled:
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.stopped_on_request = bool(flag.item())

    def fit(self) -> RunState:
        """Train until max_steps or max_epochs; checkpoints, validation and logs on the way."""
        if self.train.max_steps is None and self.train.max_epochs is None:
            raise ConfigError("set max_steps or max_epochs (--max-steps / --max-epochs): the run needs an end")
        if len(self.train_set) < self.train.batch_size:
            raise ConfigError(f"{len(self.train_set)} training file(s), fewer than one batch ({self.train.batch_size}): "
                              "add files or lower the batch size")
        self.stop_requested = self.stopped_on_request = False
        if self._done() and self.dist.is_main:  # a resumed run keeps its max_steps / max_epochs
            log.warning("the run is already at its end (step %d, epoch %d; max_steps %s, max_epochs %s): pass "
                        "--max-steps or --max-epochs to go further", self.state.step, self.state.epoch,
                        self.train.max_steps, self.train.max_epochs)
        bar, first_step, first_loaded = self._progress_bar(), self.state.step, self.loaded_steps
        try:
            while not self._done():
                if self._run_epoch(bar):  # the epoch's batches ran out
                    self.state.epoch += 1
                    self.state.batch_in_epoch = 0
                    if self.train.lr_decay_every == "epoch":
                        self._decay_learning_rates()
        finally:
            self._train_loader = None  # its workers stop
            if bar is not None:
                bar.close()
        if self.state.step > first_step and self.loaded_steps == first_loaded:
            raise _nothing_loaded(f"none of the {self.state.step - first_step} steps' batches")
        self.save()
        return self.state

    def _run_epoch(self, bar) -> bool:
        """Optimiser steps until the epoch ends (True) or the run is done (False)."""
        batches, whole_epoch, loaded_before = self._epoch_batches(), self.state.batch_in_epoch == 0, self.loaded_steps
        while self.state.batch_in_epoch < self.steps_per_epoch:  # the epoch ends with its last step
            if self._done():
                return False
            self._run_step(list(itertools.islice(batches, self.train.grad_accum)), bar)
        if whole_epoch and self.loaded_steps == loaded_before:  # all skipped: the run would go on, training nothing
            raise _nothing_loaded(f"no batch of epoch {self.state.epoch}")
        return True

    def _run_step(self, group: list[dict | None], bar) -> None:
        """One optimiser step on `group`. A step whose micro-batch had no loadable clip is counted, so
        that processes and resumed runs stay in step, but nothing is trained (nor added to loaded_steps)."""
        started = time.perf_counter()
        flag = torch.tensor(float(all(batch is not None for batch in group)), device=self.device)
        if self.dist.enabled:  # every process skips together, or DDP would wait forever
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        loaded = bool(flag.item())
        metrics = self.train_step(group) if loaded else None
        self.state.step += 1
        self.state.batch_in_epoch += 1
        self._agree_on_stop()  # before logging: a stop makes this step the run's last
        if not loaded:
            self.state.skipped_total += 1
            if self.dist.is_main:
                log.warning("step %d: no clip of its batch could be loaded; nothing trained", self.state.step)
        if metrics is not None:
            frames = sum(len(b["audio"]) for b in group) * self.train.segment_size // self.model.mel.hop_length
            elapsed = time.perf_counter() - started
            self._log(metrics, frames * self.dist.world_size / elapsed, elapsed, bar)
        elif bar is not None:  # a skipped step still moves the bar
            bar.update(1)
        if self.valid_set.examples and self.state.step % self.train.validation_interval == 0:
            self.validate()
        if self.state.step % self.train.checkpoint_interval == 0:
            self.save()
        self.loaded_steps += loaded

    # ---- logs --------------------------------------------------------------------------------
    def _progress_bar(self):
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.train.max_steps, initial=self.state.step, unit="step", dynamic_ncols=True)

    def writer(self):
        if self._writer is None and self.dist.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra; the JSON-lines log is always written
                self._writer = False
            else:
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer or None

    def _log(self, metrics: dict, frames_per_second: float, step_time: float, bar) -> None:
        values = {name: float(mean_across(value, self.dist)) for name, value in metrics.items()}
        if bar is not None:
            bar.update(1)
            bar.set_postfix(d=f"{values['loss_d']:.3f}", g=f"{values['loss_g']:.3f}", mel=f"{values['mel']:.3f}")
        if not self.dist.is_main or (self.state.step % self.train.log_interval and not self._done()):
            return  # every log_interval steps, and the run's last step
        record = {"step": self.state.step, "epoch": self.state.epoch, **values,
                  "lr": self.optim_g.param_groups[0]["lr"], "frames_per_s": frames_per_second,
                  "step_time": step_time, "skipped_steps": self.state.skipped_total}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        writer = self.writer()
        if writer is not None:
            for name, value in record.items():
                if name not in ("step", "epoch"):
                    writer.add_scalar(f"train/{name}", value, self.state.step)

    @torch.no_grad()
    def validate(self) -> dict | None:
        """Mean mel L1 between each whole validation utterance and its vocoded version, unscaled:
        `val_mel_l1` on the 8 kHz model mel, `val_mel_l1_full` on the full-band loss mel (the figure
        the original train.py logs). When fine-tuning, the generator reads the given mel and both
        compare against the real audio's mels, as there."""
        if not self.dist.is_main:
            return None
        self.generator.eval()
        errors = []
        for index in range(len(self.valid_set)):
            item = self.valid_set[index]
            if item is not None:
                errors.append(self._validation_errors(index, item))
        self.generator.train()
        if not errors:
            return None
        means = {name: sum(e[name] for e in errors) / len(errors) for name in errors[0]}
        with open(self.run_dir / "log.jsonl", "a") as handle:
            handle.write(json.dumps({"step": self.state.step, **means}) + "\n")
        writer = self.writer()
        if writer is not None:
            for name, value in means.items():
                writer.add_scalar(f"val/{name.removeprefix('val_')}", value, self.state.step)
        return means

    def _validation_errors(self, index: int, item: dict) -> dict[str, float]:
        audio = item["audio"].to(self.device)
        mel = item["mel"].to(self.device) if item["mel"] is not None else self.input_mel(audio)
        generated = self.generator(mel[None])[0, 0].float()  # frames * hop samples, as long as audio
        if index < 2:
            self._log_sample(index, generated, mel)
        return {name: float((mel_of(generated) - mel_of(audio)).abs().mean())
                for name, mel_of in (("val_mel_l1", self.input_mel), ("val_mel_l1_full", self.loss_mel))}

    def _log_sample(self, index: int, audio: torch.Tensor, mel: torch.Tensor) -> None:
        writer = self.writer()
        if writer is None:
            return
        writer.add_audio(f"val/audio_{index}", audio.float().cpu().clamp(-1, 1)[None], self.state.step,
                         sample_rate=self.model.mel.sample_rate)
        picture = torch.cat([mel, self.input_mel(audio)[:, : mel.shape[-1]]], dim=0).cpu()
        picture = (picture - picture.min()) / (picture.max() - picture.min() + 1e-8)
        writer.add_image(f"val/mel_{index}_input_over_output", picture.flip(0)[None], self.state.step)

    # ---- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> dict:
        return {
            "format": NATIVE_FORMAT, "kind": "training", "version": NATIVE_VERSION,
            "config": self.model.to_dict(), "train_config": dataclasses.asdict(self.train),
            "generator": self.generator.state_dict(), "mpd": self.mpd.state_dict(), "msd": self.msd.state_dict(),
            "optim_g": self.optim_g.state_dict(), "optim_d": self.optim_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "state": dataclasses.asdict(self.state), "rng": torch.get_rng_state(),
        }

    def save(self) -> Path | None:
        """Write checkpoints/train_XXXXXXXX.pt atomically (main process) and keep the last N."""
        barrier(self.dist)
        if not self.dist.is_main:
            return None
        folder = self.run_dir / "checkpoints"
        path = folder / f"train_{self.state.step:08d}.pt"
        save_checkpoint(self.checkpoint(), path)
        for old in sorted(folder.glob("train_*.pt"))[: -self.train.keep_last]:
            old.unlink()
        return path

    def load(self, obj: dict) -> None:
        """Restore everything a native training checkpoint holds."""
        self.generator.load_state_dict(obj["generator"])
        self.mpd.load_state_dict(obj["mpd"])
        self.msd.load_state_dict(obj["msd"])
        for name in ("optim_g", "optim_d", "sched_g", "sched_d", "scaler_g", "scaler_d"):
            getattr(self, name).load_state_dict(obj[name])
        self.state = RunState(**obj["state"])
        torch.set_rng_state(obj["rng"])

    def load_pair(self, training, generator_state: dict, *, keep_optimizers: bool = True,
                  lr_scale: float = 1.0) -> None:
        """Start from a foreign checkpoint pair (original g_/do_, DLE gen/discrim) read by hifigan.formats."""
        self.generator.load_state_dict(generator_state)
        if training is None:
            return
        self.mpd.load_state_dict(training.mpd)
        self.msd.load_state_dict(training.msd)
        if keep_optimizers and training.optim_g and training.optim_d:
            _load_foreign_optimizer(self.optim_g, training.optim_g)
            _load_foreign_optimizer(self.optim_d, training.optim_d)
            for optimizer in (self.optim_g, self.optim_d):
                for group in optimizer.param_groups:
                    group["lr"] *= lr_scale
            for scheduler, optimizer in ((self.sched_g, self.optim_g), (self.sched_d, self.optim_d)):
                scheduler.base_lrs = [group["lr"] for group in optimizer.param_groups]
            self.state = RunState(step=training.steps, epoch=training.epoch)
