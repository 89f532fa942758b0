import copy
import dataclasses

import pytest
import torch

from conftest import TINY, lively, random_mel
from hifigan.config import GENERATOR_PRESETS
from hifigan import generator as generator_module
from hifigan.blockconv import block_conv1d
from hifigan.generator import Generator
from hifigan.layers import fold_weight_norm
from hifigan.mel import SILENCE_LOG_MEL


@pytest.mark.parametrize("name,count", [("v1", 13_926_017), ("v2", 925_985), ("v3", 1_462_273)])
def test_parameter_counts_match_the_paper_models(name, count):
    generator = Generator(**dataclasses.asdict(GENERATOR_PRESETS[name]), weight_norm=False)
    assert sum(p.numel() for p in generator.parameters()) == count


@pytest.mark.parametrize("name", ["v1", "v3"])
@pytest.mark.parametrize("frames", [1, 7, 32])
def test_output_length_is_frames_times_hop(name, frames):
    generator = Generator(**dataclasses.asdict(TINY[name])).eval()
    with torch.no_grad():
        audio = generator(random_mel(frames, batch=2))
    assert audio.shape == (2, 1, frames * 256)
    assert audio.abs().max() <= 1.0


@pytest.mark.parametrize("name", ["v1", "v3"])
def test_folding_weight_norm_keeps_the_output(name):
    # Random g and v: g != ||v||, so folding is not trivially the identity.
    generator = lively(Generator(**dataclasses.asdict(TINY[name]))).eval()
    mel = random_mel(20, batch=1)
    with torch.no_grad():
        before = generator(mel)
        folded = fold_weight_norm(copy.deepcopy(generator))
        after = folded(mel)
    assert not any("parametrizations" in key for key in folded.state_dict())
    assert before.std() > 0.01
    assert torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize("name", ["v1", "v3", "v1-wide"])
def test_channels_last_training_equals_the_plain_layout(name, monkeypatch):
    """v1-wide has 128- and 64-channel stages, whose k = 11 and k = 7 convs train in DFT blocks (fp32, CPU)
    from 1024 positions (batch x length) at k = 7 and 512 at k = 11."""
    config = dataclasses.replace(GENERATOR_PRESETS["v1"], upsample_initial_channel=256) if name == "v1-wide" else TINY[name]
    plain = lively(Generator(**dataclasses.asdict(config)))
    fast = copy.deepcopy(plain).train_channels_last()
    mel = random_mel(64 if name == "v1-wide" else 12, batch=2)
    blocks = []
    monkeypatch.setattr(generator_module, "block_conv1d", lambda *a, **k: blocks.append(k) or block_conv1d(*a, **k))
    outputs = [g(mel) for g in (plain, fast)]
    assert len(blocks) == (18 if name == "v1-wide" else 0)  # k = 11 and k = 7 at 128 channels, k = 11 at 64
    if name == "v1-wide":
        assert {k["dilation"] for k in blocks} == {1, 3, 5}
        blocks.clear()
        fast(random_mel(12, batch=2))  # 192 positions in the 128-channel stage: oneDNN there
        assert len(blocks) == 6
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    grads = [torch.autograd.grad(out.square().sum(), list(g.parameters())) for out, g in zip(outputs, (plain, fast))]
    for ours, expected in zip(*grads[::-1]):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    with torch.no_grad():  # eval mode (inference) runs the plain layout: bit-identical
        assert torch.equal(fast.eval()(mel), plain.eval()(mel))


def test_state_dict_keys_follow_the_original_layout():
    keys = set(Generator(**dataclasses.asdict(TINY["v1"]), weight_norm=False).state_dict())
    assert {"conv_pre.weight", "ups.3.weight", "resblocks.11.convs1.2.weight", "resblocks.0.convs2.0.bias",
            "conv_post.weight"} <= keys
    keys_v3 = set(Generator(**dataclasses.asdict(TINY["v3"]), weight_norm=False).state_dict())
    assert "resblocks.8.convs.1.weight" in keys_v3


@pytest.mark.parametrize("name", ["v1", "v3"])
def test_padded_batch_equals_unpadded_items(name):
    generator = lively(Generator(**dataclasses.asdict(TINY[name]), weight_norm=False)).eval()
    short, long = random_mel(9, seed=1), random_mel(40, seed=2)
    batch = torch.full((2, 80, 40), SILENCE_LOG_MEL)
    batch[0, :, :9], batch[1] = short, long
    with torch.no_grad():
        padded = generator(batch, torch.tensor([9, 40]))
        alone_short = generator(short[None])
        alone_long = generator(long[None])
    assert torch.allclose(padded[0, :, : 9 * 256], alone_short[0], atol=1e-5)
    assert torch.allclose(padded[1], alone_long[0], atol=1e-5)
    # Without the mask the padding leaks into the last frames: the mask is what makes them equal.
    with torch.no_grad():
        unmasked = generator(batch)
    assert not torch.allclose(unmasked[0, :, : 9 * 256], alone_short[0], atol=1e-4)
