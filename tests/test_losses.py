import torch

from hifigan.losses import (LOSS_WEIGHTS, adversarial_loss, discriminator_loss, feature_matching_loss,
                            generator_loss, mel_loss)


def outputs(logit_value, map_value):
    return [(torch.full((2, 5), logit_value), [torch.full((2, 3), map_value), torch.full((2, 4), map_value)])
            for _ in range(3)]


def test_discriminator_loss_is_zero_for_a_perfect_discriminator():
    assert discriminator_loss(outputs(1.0, 0.0), outputs(0.0, 0.0)).item() == 0.0
    # Each of 3 sub-discriminators: (1-0)^2 + 1^2 = 2 when it gets both wrong.
    assert discriminator_loss(outputs(0.0, 0.0), outputs(1.0, 0.0)).item() == 6.0


def test_adversarial_and_feature_matching_values():
    assert adversarial_loss(outputs(0.5, 0.0)).item() == 3 * 0.25
    # 3 discriminators x 2 maps x mean |1 - 0.25|.
    assert abs(feature_matching_loss(outputs(0.0, 1.0), outputs(0.0, 0.25)).item() - 3 * 2 * 0.75) < 1e-6


def test_feature_matching_does_not_push_gradients_into_real_maps():
    real_map = torch.ones(2, 3, requires_grad=True)
    fake_map = torch.zeros(2, 3, requires_grad=True)
    feature_matching_loss([(torch.zeros(2, 1), [real_map])], [(torch.zeros(2, 1), [fake_map])]).backward()
    assert real_map.grad is None and fake_map.grad is not None


def test_generator_loss_uses_the_weights_mapping():
    real_mel, fake_mel = torch.zeros(1, 80, 10), torch.full((1, 80, 10), 0.1)
    total, terms = generator_loss(outputs(1.0, 1.0), outputs(0.5, 0.5), real_mel, fake_mel)
    expected = sum(LOSS_WEIGHTS[name] * value for name, value in terms.items())
    assert torch.isclose(total, expected)
    assert torch.isclose(terms["mel"], mel_loss(real_mel, fake_mel))
    assert LOSS_WEIGHTS == {"adversarial": 1.0, "feature_matching": 2.0, "mel": 45.0}
    only_mel, _ = generator_loss(outputs(1.0, 1.0), outputs(0.5, 0.5), real_mel, fake_mel,
                                 weights={"adversarial": 0.0, "feature_matching": 0.0, "mel": 1.0})
    assert torch.isclose(only_mel, torch.tensor(0.1))


def test_feature_matching_keeps_each_maps_layout_and_value():
    torch.manual_seed(0)
    real = torch.randn(2, 16, 5).transpose(1, 2)  # (2, 5, 16) with channels-last strides
    fake_first = torch.randn(2, 5, 16, requires_grad=True)  # the same shape, channels-first
    fake_last = fake_first.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_()
    expected = torch.mean(torch.abs(real - fake_first.detach()))
    for fake in (fake_first, fake_last):
        loss = feature_matching_loss([(torch.zeros(2, 1), [real])], [(torch.zeros(2, 1), [fake])])
        torch.testing.assert_close(loss, expected)
        grad, = torch.autograd.grad(loss, fake)
        assert grad.stride() == fake.stride()  # no layout mixing in the backward pass
        torch.testing.assert_close(grad, torch.sign(fake.detach() - real) / real.numel())


def test_feature_matching_gradient_passes_gradcheck_and_takes_bf16_maps():
    torch.manual_seed(1)
    real, fake = torch.randn(2, 4, 7, dtype=torch.float64), torch.randn(2, 4, 7, dtype=torch.float64, requires_grad=True)
    loss = lambda f: feature_matching_loss([(torch.zeros(2, 1), [real])], [(torch.zeros(2, 1), [f])])  # noqa: E731
    assert torch.autograd.gradcheck(loss, (fake,))
    half = feature_matching_loss([(torch.zeros(2, 1), [real.bfloat16()])], [(torch.zeros(2, 1), [fake.bfloat16()])])
    torch.testing.assert_close(half.double(), loss(fake).detach(), rtol=1e-2, atol=0)
