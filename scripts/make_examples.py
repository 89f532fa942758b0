"""Regenerate examples/*.wav: speech synthesised by flite (Debian package `flite`), 22050 Hz.

Run: python scripts/make_examples.py   (needs the `flite` program on PATH)
The clips are ours (synthetic), so they can be shipped with the project.
"""

import subprocess
import tempfile
from pathlib import Path

from hifigan.audio import load_audio, peak_normalize, resample, save_audio

SENTENCES = {
    "slt_vocoder": ("slt", "A neural vocoder turns a mel spectrogram back into a waveform."),
    "rms_weather": ("rms", "The weather will be cloudy this morning, with some sunshine later in the day."),
    "awb_numbers": ("awb", "Please call me back at seven thirty, or send a message before nine."),
}
TARGET_RATE = 22050


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "examples"
    for name, (voice, text) in SENTENCES.items():
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "raw.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
            audio, rate = load_audio(raw)
        save_audio(out / f"{name}.wav", peak_normalize(resample(audio, rate, TARGET_RATE), 0.9), TARGET_RATE)
        print(out / f"{name}.wav")


if __name__ == "__main__":
    main()
