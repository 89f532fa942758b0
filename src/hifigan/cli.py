"""Command line: each subcommand parses its arguments and calls one library function.

Errors a user can cause print one line (`hifigan: error: ...`) and exit with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import warnings
from typing import Sequence

from .errors import HifiganError
from .pretrained import PRETRAINED

DEFAULT_MODEL = "universal-v1"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"registered name ({', '.join(PRETRAINED)}) or checkpoint path (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")
    _add_engine_options(parser)
    parser.add_argument("--denoise", type=float, default=0.0, metavar="STRENGTH",
                        help="remove the model's bias tone with this strength (0.005-0.1 typical; default 0: off)")


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="bf16/fp16 fall back to fp32 with a warning where the hardware lacks them")
    parser.add_argument("--backend", default="torch", choices=("torch", "eager", "compile", "onnxruntime", "openvino"),
                        help="torch: our fast path (default); eager: the plain generator; see README")
    parser.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: the library's)")


def _load_vocoder(args: argparse.Namespace):
    from .vocoder import Vocoder

    return Vocoder.from_pretrained(args.model, device=args.device, precision=args.precision, backend=args.backend,
                                   threads=args.threads)


def _report(report) -> int:
    for error in report.errors:
        print(f"hifigan: error: {error}", file=sys.stderr)
    print(f"wrote {len(report.written)} file(s)" + (f", {len(report.errors)} failed" if report.errors else ""),
          file=sys.stderr)
    return 2 if report.errors else 0


def cmd_resynth(args: argparse.Namespace) -> int:
    from .jobs import resynthesize_files

    return _report(resynthesize_files(_load_vocoder(args), args.inputs, args.output, plot=args.plot,
                                      denoise=args.denoise))


def cmd_vocode(args: argparse.Namespace) -> int:
    from .jobs import vocode_files

    return _report(vocode_files(_load_vocoder(args), args.inputs, args.output, denoise=args.denoise,
                                stream_chunk=args.stream_chunk))


def cmd_convert(args: argparse.Namespace) -> int:
    from .formats import convert

    for path in convert(args.input, args.output, to=args.to, discriminator=args.discriminator):
        print(f"wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export
    from .formats import load_generator
    from .pretrained import resolve

    generator, config = load_generator(resolve(args.model))
    report = export(generator, config, args.output, fmt=args.format, static_frames=args.static_frames)
    shapes = ", ".join("x".join(map(str, shape)) for shape in report.checked_shapes)
    print(f"wrote {report.path} ({report.format}); max |exported - pytorch| = {report.max_abs_diff:.2e} "
          f"on mels {shapes}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = _load_vocoder(args).describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    generator, mel = info["generator"], info["mel"]
    print(f"model:       {args.model}")
    print(f"generator:   ResBlock{generator['resblock']}, upsample rates {list(generator['upsample_rates'])}, "
          f"kernels {list(generator['upsample_kernel_sizes'])}, {generator['upsample_initial_channel']} channels")
    print(f"resblocks:   kernels {list(generator['resblock_kernel_sizes'])}, "
          f"dilations {[list(d) for d in generator['resblock_dilation_sizes']]}")
    print(f"parameters:  {info['parameters']:,} (weight norm folded)")
    print(f"audio:       {mel['sample_rate']} Hz, hop {mel['hop_length']} samples")
    f_max = mel["f_max"] if mel["f_max"] is not None else mel["sample_rate"] / 2
    print(f"mel:         {mel['n_mels']} bands, {mel['f_min']:g}-{f_max:g} Hz, "
          f"n_fft {mel['n_fft']}, window {mel['win_length']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, markdown_table, read_id_list

    held_out = read_id_list(args.holdout_list) if args.holdout_list else None
    evaluation = evaluate(args.model or [DEFAULT_MODEL], args.inputs, mels_dir=args.mels, report_dir=args.report,
                          held_out_ids=held_out, device=args.device)
    print(markdown_table(evaluation), end="")
    for error in evaluation.errors:
        print(f"hifigan: error: {error}", file=sys.stderr)
    if args.report:
        print(f"report written to {args.report}", file=sys.stderr)
    return 2 if evaluation.errors else 0


TRAIN_OPTIONS = {  # flag -> (TrainConfig field, type)
    "--batch-size": ("batch_size", int), "--segment-size": ("segment_size", int), "--lr": ("learning_rate", float),
    "--lr-decay": ("lr_decay", float), "--lr-decay-every": ("lr_decay_every", str),
    "--grad-clip": ("grad_clip", float), "--grad-accum": ("grad_accum", int), "--precision": ("precision", str),
    "--max-steps": ("max_steps", int), "--max-epochs": ("max_epochs", int), "--seed": ("seed", int),
    "--log-interval": ("log_interval", int), "--validation-interval": ("validation_interval", int),
    "--checkpoint-interval": ("checkpoint_interval", int), "--keep-last": ("keep_last", int),
    "--num-workers": ("num_workers", int),
}


def _add_train_options(parser: argparse.ArgumentParser, resume: str) -> None:
    """The options `train` and `finetune` share; `resume` describes what --resume PATH continues."""
    parser.add_argument("--resume", nargs="?", const="", default=None,
                        help=f"{resume}; bare --resume continues --run-dir, or starts it when it has no checkpoint yet")
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="audio folder, or a dataset root for --train-list/--valid-list")
    data.add_argument("--train-list", help="filelist of training clips (`path_or_id|...`), relative to --data")
    data.add_argument("--valid-list", help="filelist of validation clips; default: a seeded 2%% split")
    run = parser.add_argument_group("run")
    run.add_argument("--run-dir", required=True, help="folder for checkpoints, log.jsonl and TensorBoard logs")
    run.add_argument("--config", help="model config JSON (ours or the original authors'); default: --preset")
    run.add_argument("--preset", default="v1", help="v1/v2/v3, a rate (16k/24k/44k/48k) or both (v2-24k)")
    run.add_argument("--train-config", help="JSON of training settings (TrainConfig fields)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--system-malloc", action="store_true",
                     help="keep glibc's default allocator settings (by default a CPU run keeps freed memory "
                          "for reuse, in a heap of huge pages: no page faults per step, fewer TLB misses; "
                          "memory stays at its peak)")
    options = parser.add_argument_group("training settings (override --train-config)")
    for flag, (_, kind) in TRAIN_OPTIONS.items():
        options.add_argument(flag, type=kind, default=None)


def _training_inputs(args: argparse.Namespace, mels: str | None = None):
    """(model config, train config, overrides, train examples, valid examples) from parsed arguments."""
    import json as json_module
    from pathlib import Path

    from .config import TrainConfig, load_json_config, model_preset, train_settings_from_json
    from .data import Example, audio_files, pair_with_mels, read_filelist, split_files

    model = load_json_config(args.config) if args.config else model_preset(args.preset)
    base = train_settings_from_json(args.config) if args.config else {}  # the original config.json's batch size, ...
    if args.train_config:
        base.update(json_module.loads(Path(args.train_config).read_text()))
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _) in TRAIN_OPTIONS.items()
                 if getattr(args, flag[2:].replace("-", "_")) is not None}
    train_config = TrainConfig.from_dict({**base, **overrides})
    if args.train_list:
        train_files = read_filelist(args.train_list, args.data)
        valid_files = read_filelist(args.valid_list, args.data) if args.valid_list else []
    else:
        train_files, valid_files = split_files(audio_files(args.data), seed=train_config.seed)
    if mels:
        train_pairs = pair_with_mels(train_files, mels)
        return model, train_config, overrides, train_pairs, pair_with_mels(valid_files, mels, required=False)
    return model, train_config, overrides, [Example(f) for f in train_files], [Example(f) for f in valid_files]


def _rank_zero() -> bool:
    """Whether this process speaks for a run: always, or rank 0 under torchrun."""
    return os.environ.get("RANK", "0") == "0"


def _report_stop(state, run_dir: str) -> int:
    """Where a run stopped, said once."""
    if _rank_zero():
        print(f"stopped at step {state.step}, epoch {state.epoch}; checkpoints in {run_dir}/checkpoints")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train.run import train

    model, train_config, overrides, train_set, valid_set = _training_inputs(args)
    state = train(model, train_config, args.run_dir, train_set, valid_set, device=args.device,
                  resume=_resume_source(args), overrides=overrides, tune_malloc=not args.system_malloc,
                  stop_on_signals=True)
    return _report_stop(state, args.run_dir)


def _resume_source(args: argparse.Namespace) -> str | None:
    """--resume PATH as given; a bare --resume means --run-dir once it has a checkpoint, else a new run
    (a job script that restarts itself can always pass it)."""
    from .train.run import latest_checkpoint

    if args.resume != "":
        return args.resume
    if latest_checkpoint(args.run_dir):
        return args.run_dir
    if _rank_zero():
        print(f"hifigan: no checkpoint in {args.run_dir}/checkpoints yet: starting the run", file=sys.stderr)
    return None


def cmd_finetune(args: argparse.Namespace) -> int:
    from .train.run import train

    model, train_config, overrides, train_set, valid_set = _training_inputs(args, mels=args.mels)
    state = train(model, train_config, args.run_dir, train_set, valid_set, device=args.device, init=args.init,
                  resume=_resume_source(args), keep_optimizers=args.keep_optimizer, lr_scale=args.lr_scale,
                  overrides=overrides, mel_framing=args.mel_framing, tune_malloc=not args.system_malloc,
                  stop_on_signals=True)
    return _report_stop(state, args.run_dir)


def cmd_export_generator(args: argparse.Namespace) -> int:
    from .train.run import export_generator

    print(f"wrote {export_generator(args.source, args.output)}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .prepare import prepare_ljspeech

    prepared = prepare_ljspeech(args.root, fetch=args.download, url=args.url, training_list=args.training_list,
                                validation_list=args.validation_list, seed=args.seed, mels=args.mels)
    print(f"{prepared.train_list}: {prepared.counts[0]} clips; {prepared.valid_list}: {prepared.counts[1]} clips"
          + (f"; {prepared.missing} listed ids have no wav" if prepared.missing else ""))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench, format_result, load_bench_vocoder

    vocoder = load_bench_vocoder(args.model, device=args.device, precision=args.precision, backend=args.backend,
                                 threads=args.threads)
    result = bench(vocoder, model=args.model, frames=args.frames, batch=args.batch, warmup=args.warmup,
                   repeats=args.repeats, requested_precision=args.precision, threads=args.threads)
    print(json.dumps(dataclasses.asdict(result), indent=2) if args.json else format_result(result))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from .serve import VocoderServer, VocoderService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    server = VocoderServer(VocoderService(_load_vocoder(args), default_denoise=args.denoise), args.host, args.port,
                           max_body_bytes=int(args.max_mb * 2 ** 20))
    print(f"serving {args.model} on {server.url}: GET /health, POST /vocode (.npy or JSON mel), "
          "POST /resynthesize (audio file); Ctrl-C stops", file=sys.stderr)
    # Stop cleanly on Ctrl-C and on SIGTERM (docker stop, systemd), also when started with
    # SIGINT ignored, as shells start background jobs.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hifigan", description="HiFi-GAN neural vocoder")
    commands = parser.add_subparsers(dest="command", required=True)

    resynth = commands.add_parser("resynth", help="audio files -> mel -> vocoded audio")
    resynth.add_argument("inputs", nargs="+", help="wav/flac/ogg files or folders")
    resynth.add_argument("-o", "--output", required=True, help="output folder")
    resynth.add_argument("--plot", action="store_true", help="also write a PNG comparing input and output mels")
    _add_model_options(resynth)
    resynth.set_defaults(run=cmd_resynth)

    vocode = commands.add_parser("vocode", help="mel files (.npy/.pt, (n_mels, T)) -> audio")
    vocode.add_argument("inputs", nargs="+", help=".npy/.pt mel files or folders")
    vocode.add_argument("-o", "--output", required=True, help="output folder")
    vocode.add_argument("--stream-chunk", type=int, default=None, metavar="FRAMES",
                        help="vocode in chunks of this many frames, as a stream would (same output)")
    _add_model_options(vocode)
    vocode.set_defaults(run=cmd_vocode)

    convert = commands.add_parser("convert", help="convert a checkpoint between formats")
    convert.add_argument("input", help="checkpoint in any supported format (detected from content)")
    convert.add_argument("output", help="file to write (formats with several files write them beside it)")
    convert.add_argument("--to", required=True, choices=("original", "dle", "nemo", "torchaudio", "native"))
    convert.add_argument("--discriminator", help="the training pair's discriminator file, if not beside the input")
    convert.set_defaults(run=cmd_convert)

    export = commands.add_parser("export", help="export to ONNX or TorchScript, with a parity check")
    export.add_argument("model", help="registered name or checkpoint path")
    export.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--static-frames", type=int, default=None, metavar="N",
                        help="fix the number of mel frames (for runtimes that want static shapes)")
    export.set_defaults(run=cmd_export)

    evaluate = commands.add_parser("eval", help="objective metrics of one or more models on reference clips")
    evaluate.add_argument("inputs", nargs="+", help="reference wav/flac/ogg files or folders")
    evaluate.add_argument("--model", action="append", help="model name or path; repeat to compare models")
    evaluate.add_argument("--mels", help="folder of <clip>.npy/.pt mels to vocode instead of resynthesising")
    evaluate.add_argument("--report", help="folder for report.json, report.md and PNGs")
    evaluate.add_argument("--holdout-list", help="filelist of clip ids outside the training set (reported apart)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run=cmd_eval)

    train = commands.add_parser("train", help="train HiFi-GAN (single process, or under torchrun)")
    _add_train_options(train, resume="continue a run: its folder/checkpoint, an original g_ file or folder, or "
                                      "a DLE gen file")
    train.set_defaults(run=cmd_train)

    finetune = commands.add_parser("finetune", help="fine-tune a pretrained generator on acoustic-model mels")
    finetune.add_argument("--init", required=True, help="pretrained model: registered name or checkpoint of any format")
    finetune.add_argument("--mels", required=True, help="folder of <clip>.npy/.pt mels matching the audio files")
    finetune.add_argument("--mel-framing", default="reference", choices=("reference", "center"),
                          help="center: Tacotron/FastPitch-style mels (shifted by hop/2)")
    finetune.add_argument("--keep-optimizer", action="store_true",
                          help="continue the checkpoint's optimiser states (when it has them) instead of fresh ones")
    finetune.add_argument("--lr-scale", type=float, default=1.0, help="with --keep-optimizer: scale its learning rate")
    _add_train_options(finetune, resume="continue this fine-tuning run: its folder or checkpoint (--init is then ignored)")
    finetune.set_defaults(run=cmd_finetune)

    export_gen = commands.add_parser("export-generator", help="a run's generator -> release file for Vocoder")
    export_gen.add_argument("source", help="run folder (its latest checkpoint) or a training checkpoint")
    export_gen.add_argument("-o", "--output", required=True)
    export_gen.set_defaults(run=cmd_export_generator)

    prepare = commands.add_parser("prepare", help="prepare a dataset for training")
    prepare.add_argument("dataset", choices=("ljspeech",))
    prepare.add_argument("root", help="folder with (or for) LJSpeech-1.1")
    prepare.add_argument("--download", action="store_true", help="fetch and verify the official archive")
    prepare.add_argument("--url", default="https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2")
    prepare.add_argument("--training-list", help="official split: training ids (e.g. the HiFi-GAN list)")
    prepare.add_argument("--validation-list", help="official split: validation ids")
    prepare.add_argument("--seed", type=int, default=1234)
    prepare.add_argument("--mels", action="store_true", help="also write mels/<id>.npy")
    prepare.set_defaults(run=cmd_prepare)

    info = commands.add_parser("info", help="architecture, parameters and mel settings of a model")
    info.add_argument("model", help="registered name or checkpoint path")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info, device="cpu", precision="fp32", backend="torch", threads=None)

    serve = commands.add_parser("serve", help="HTTP service: POST mels or audio, get wav back")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0: all)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-mb", type=float, default=64.0, help="largest request body in MiB (default: %(default)s)")
    _add_model_options(serve)
    serve.set_defaults(run=cmd_serve)

    bench = commands.add_parser("bench", help="latency, throughput, real-time factor and memory of an inference path")
    bench.add_argument("--model", default="v1", help="v1/v2/v3 (random weights, no download), a registered name "
                       "or a checkpoint/.onnx path (default: %(default)s)")
    bench.add_argument("--frames", type=int, default=693, help="mel frames per item (default: %(default)s, 8 s)")
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls first (default: %(default)s)")
    bench.add_argument("--repeats", type=int, default=10, help="timed calls (default: %(default)s)")
    bench.add_argument("--device", default="cpu")
    _add_engine_options(bench)
    bench.add_argument("--json", action="store_true", help="print the result as JSON")
    bench.set_defaults(run=cmd_bench)
    return parser


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"hifigan: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _print_warning  # one line, not the source line of the warning
            return args.run(args)
    except HifiganError as err:
        print(f"hifigan: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)  # TrainingInterrupted says which and where
        if _rank_zero() or not str(stop):  # a stopped run is reported once
            print(f"hifigan: {stop}" if str(stop) else "hifigan: interrupted", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
