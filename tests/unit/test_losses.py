"""DMD, CFG, Re-DMD weights and the ODE loss against hand-computed cases."""

import math

import pytest
import torch

from rf.diffusion.flow import cfg
from rf.losses.dmd import dmd_gradient, dmd_loss, flow_matching_loss
from rf.losses.re_dmd import reward_weights, weighted_mean


def test_cfg_combination():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert cfg(cond, uncond, 4.0).item() == 2.0 + 3.0 * 1.0  # the released code's cond + 3 (cond - uncond)
    assert cfg(cond, uncond, 1.0).item() == 2.0


def test_dmd_gradient_hand_computed():
    # one sample, 4 elements: mean|x - x0_real| = (1 + 1 + 2 + 0) / 4 = 1
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    real = torch.tensor([[0.0, 1.0, 1.0, 4.0]])
    fake = torch.tensor([[1.0, 1.0, 3.0, 2.0]])
    g = dmd_gradient(x, real, fake)
    torch.testing.assert_close(g, torch.tensor([[1.0, 0.0, 2.0, -2.0]]))
    # the normalisation is per sample: doubling one sample's distance halves its gradient only
    x2 = torch.cat([x, 2 * x - real])  # second sample twice as far from x0_real
    g2 = dmd_gradient(x2, torch.cat([real, real]), torch.cat([fake, fake]))
    torch.testing.assert_close(g2[1], g[0] / 2)


def test_dmd_loss_value_and_gradient():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    g = torch.tensor([[1.0, 0.0, 2.0, -2.0]])
    loss = dmd_loss(x, g)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(0.5 * (1 + 0 + 4 + 4) / 4)  # 0.5 ||g||^2 / numel
    loss.sum().backward()
    torch.testing.assert_close(x.grad, g / 4)  # d/dx = g / numel: the DMD direction


def test_flow_matching_loss_per_sample():
    x0, noise = torch.zeros(2, 3), torch.ones(2, 3)
    flow = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(flow_matching_loss(flow, noise, x0), torch.tensor([0.0, 1.0]))


def test_reward_weights_formula():
    r = torch.tensor([0.0, 1.0, -1.0])
    w, valid = reward_weights(r, beta=0.5)
    torch.testing.assert_close(w, torch.exp(r / 0.5))
    assert valid.all()
    w, _ = reward_weights(r, beta=0.5, normalize=True)
    assert w.mean().item() == pytest.approx(1.0)
    w, valid = reward_weights(None, beta=0.5, batch=3)
    assert w.tolist() == [1.0, 1.0, 1.0]


def test_nonfinite_reward_drops_the_sample():
    w, valid = reward_weights(torch.tensor([0.5, float("nan"), float("inf")]), beta=0.5)
    assert valid.tolist() == [True, False, False]
    assert w[0].item() == pytest.approx(math.e) and w[1].item() == 0.0 and w[2].item() == 0.0
    assert weighted_mean(torch.tensor([2.0, 5.0, 7.0]), w).item() == pytest.approx(2 * math.e / 3)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_beta_must_be_positive(beta):
    with pytest.raises(ValueError, match=f"beta={beta}"):
        reward_weights(torch.zeros(2), beta=beta)
