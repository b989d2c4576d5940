"""StreamCNN: the per-stream CNN whose first layer follows the kind of input (thesis §5.3.2)."""

import pytest
import torch

from scalekit.video import StreamCNN, TrajectoryConv


def first_layer_change(kind, y, x):
    """Where the first layer's output changes when one input pixel (y, x) changes."""
    torch.manual_seed(0)
    net = StreamCNN(kind, num_classes=3, k=2).eval()
    shape = (1, 3, 9, 9) if kind == "rgb" else (1, 2, 4, 9, 9)
    a = torch.randn(shape)
    b = a.clone()
    b[..., y, x] += 1.0
    with torch.no_grad():
        diff = (net.features[0](a) - net.features[0](b)).abs().sum(1)[0]
    return set(map(tuple, (diff > 0).nonzero().tolist()))


def test_pixel_trajectories_are_read_at_their_own_pixel_stacked_flow_is_not():
    """The trajectory stream convolves in time only (a 1 x 2k kernel); stacked flow and
    appearance get a 3 x 3 spatial kernel."""
    assert isinstance(StreamCNN("traj", 3, k=2).features[0], TrajectoryConv)
    assert first_layer_change("traj", 4, 5) == {(4, 5)}
    around = {(y, x) for y in (3, 4, 5) for x in (4, 5, 6)}
    assert first_layer_change("stack", 4, 5) == around
    assert first_layer_change("rgb", 4, 5) == around


def test_flow_is_scaled_appearance_is_not():
    x = torch.randn(2, 2, 6, 8, 8)
    torch.manual_seed(1)
    scaled = StreamCNN("stack", 4, flow_scale=0.5).eval()
    torch.manual_seed(1)
    plain = StreamCNN("stack", 4, flow_scale=1.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(scaled(x)[1], plain(x * 0.5)[1])
    torch.manual_seed(1)
    rgb = StreamCNN("rgb", 4, flow_scale=0.5).eval()
    torch.manual_seed(1)
    rgb_plain = StreamCNN("rgb", 4, flow_scale=1.0).eval()
    image = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rgb(image)[1], rgb_plain(image)[1])


def test_a_float16_cache_is_computed_in_float32_and_the_features_feed_the_classifier():
    torch.manual_seed(0)
    net = StreamCNN("traj", 5, k=3, feat_dim=12).eval()
    x = torch.randn(3, 2, 6, 8, 8).half()
    with torch.no_grad():
        feat, logits = net(x)
        ref_feat, ref_logits = net(x.float())
    assert feat.dtype == logits.dtype == torch.float32 and feat.shape == (3, 12) and logits.shape == (3, 5)
    assert torch.equal(feat, ref_feat) and torch.equal(logits, ref_logits)
    torch.testing.assert_close(logits, net.classifier(feat))
    assert (feat >= 0).all() and (feat == 0).any()  # "fc7" after its ReLU


def test_it_learns_the_direction_of_motion_from_trajectories():
    """Four chunks whose pixels all move left or right: a few Adam steps tell them apart."""
    torch.manual_seed(0)
    x = torch.zeros(8, 2, 6, 8, 8)
    y = torch.tensor([0, 1] * 4)
    x[:, 0] = (2.0 * y - 1)[:, None, None, None] * torch.arange(1, 7.0)[None, :, None, None]  # x-displacement
    x = x + 0.1 * torch.randn_like(x)
    net = StreamCNN("traj", 2, k=3)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net(x)[1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert torch.equal(net.eval()(x)[1].argmax(1), y)


@pytest.mark.parametrize("make, error, match", [
    (lambda: StreamCNN("flow", 3), ValueError, r"kind must be one of \('rgb', 'traj', 'stack'\), got 'flow'"),
    (lambda: StreamCNN("rgb", 0), ValueError, "num_classes must be >= 1"),
    (lambda: StreamCNN("traj", 3, k=1.5), TypeError, "k must be an integer"),
    (lambda: StreamCNN("stack", 3, k=3)(torch.randn(2, 2, 4, 8, 8)), ValueError,
     r"a 'stack' stream's input must be a floating-point \[N, 2, 6, H, W\] tensor, got torch.float32 \[2, 2, 4, 8, 8\]"),
    (lambda: StreamCNN("rgb", 3)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), ValueError,
     r"'rgb' stream's input must be a floating-point \[N, 3, H, W\] tensor, got torch.uint8"),
])
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
