import dataclasses

import numpy as np
import pytest
import torch

from conftest import TINY, lively, random_mel
from hifigan import Vocoder
from hifigan.checkpoint import build_generator
from hifigan.config import GENERATOR_PRESETS, MelConfig, ModelConfig
from hifigan.streaming import receptive_field_frames


def tiny_vocoder(name):
    config = ModelConfig(mel=MelConfig(), generator=TINY[name])
    return Vocoder(lively(build_generator(config, weight_norm=False), seed=11), config)


@pytest.mark.parametrize("name", ["v1", "v3"])
@pytest.mark.parametrize("chunk", [1, 7, 32, 500])
def test_stream_equals_whole_output(name, chunk):
    vocoder = tiny_vocoder(name)
    mel = random_mel(60, seed=5)
    whole = vocoder(mel)[0]
    pieces = list(vocoder.stream(mel.split(chunk, dim=-1)))
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape
    assert float((streamed - whole).abs().max()) < 1e-4
    if chunk == 500:  # the determined part at once, the last `latency` frames when the input ends
        assert [len(p) // 256 for p in pieces] == [60 - vocoder.stream_latency_frames, vocoder.stream_latency_frames]


def test_uneven_numpy_chunks_and_latency():
    vocoder = tiny_vocoder("v1")
    latency = vocoder.stream_latency_frames
    mel = random_mel(50, seed=6).numpy()
    bounds = [0, 3, 4, 20, 21, 44, 50]
    received = 0

    def chunks():
        nonlocal received
        for a, b in zip(bounds, bounds[1:]):
            received = b
            yield mel[:, a:b]

    emitted, pieces = 0, []
    for piece in vocoder.stream(chunks()):
        assert isinstance(piece, np.ndarray)
        emitted += len(piece) // 256
        pieces.append(piece)
        # Each frame is emitted as soon as `latency` frames after it have arrived, never sooner;
        # the last `latency` frames follow once the input ends.
        assert emitted == received - latency or (received == 50 and emitted == 50)
    assert np.allclose(np.concatenate(pieces), vocoder(mel)[0], atol=1e-4)
    assert latency == receptive_field_frames(**dataclasses.asdict(TINY["v1"]))


@pytest.mark.parametrize("name", ["v1", "v3"])
def test_receptive_field_bound_holds(name):
    """No output sample moves when an input frame farther than the bound changes."""
    generator = lively(build_generator(ModelConfig(generator=TINY[name]), weight_norm=False), seed=2).eval()
    mel = random_mel(80, seed=3, batch=1).requires_grad_(True)
    centre = 40
    generator(mel)[0, 0, centre * 256: (centre + 1) * 256].abs().sum().backward()
    influenced = (mel.grad[0].abs().sum(0) > 0).nonzero().flatten()
    reach = int(max(centre - influenced.min(), influenced.max() - centre))
    bound = receptive_field_frames(**dataclasses.asdict(GENERATOR_PRESETS[name]))
    assert reach <= bound <= reach + 6, (reach, bound)


def test_stream_rejects_bad_chunks():
    from hifigan.errors import InputError

    vocoder = tiny_vocoder("v1")
    with pytest.raises(InputError, match="60 channels"):
        list(vocoder.stream([torch.zeros(80, 5), torch.zeros(60, 5)]))
    assert list(vocoder.stream([])) == []
