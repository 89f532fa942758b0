"""Command line: each subcommand parses its arguments and calls one library function.

Errors a user can cause print one line (`hifigan: error: ...`) and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import HifiganError
from .pretrained import PRETRAINED

DEFAULT_MODEL = "universal-v1"


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"registered name ({', '.join(PRETRAINED)}) or checkpoint path (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    parser.add_argument("--denoise", type=float, default=0.0, metavar="STRENGTH",
                        help="remove the model's bias tone with this strength (0.005-0.1 typical; default 0: off)")


def _load_vocoder(args: argparse.Namespace):
    from .vocoder import Vocoder

    return Vocoder.from_pretrained(args.model, device=args.device, precision=args.precision, backend=args.backend)


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

    info = commands.add_parser("info", help="architecture, parameters and mel settings of a model")
    info.add_argument("model", help="registered name or checkpoint path")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info, device="cpu", precision="fp32", backend="torch")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except HifiganError as err:
        print(f"hifigan: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hifigan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
