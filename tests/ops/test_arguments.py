"""Scalar arguments of the ops: which types are numbers, what errors say, that
the modules check at construction what the functions check per call, that
the work per call is bounded, and that the checks trace under torch.compile."""

import numpy as np
import pytest
import torch

from scalekit import ops

X = torch.rand(1, 4 * 4, 8, 8)
ROIS = torch.tensor([[0.0, 1, 1, 6, 6]])
OFFSET = torch.zeros(1, 18, 6, 6)
W = torch.rand(2, 16, 3, 3)


class TestIntegerArguments:
    @pytest.mark.parametrize("value", [3.0, 2.5, "3", None, (2, 2.0), (2, 2, 2), True])
    def test_output_size_must_be_ints(self, value):
        with pytest.raises(TypeError, match=r"output_size must be an int or a pair of ints, got "):
            ops.ps_roi_align(X, ROIS, value)
        with pytest.raises(TypeError, match=r"output_size must be an int or a pair of ints, got "):
            ops.PSRoIPool(value)

    @pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
    def test_conv_pairs_must_be_ints(self, name):
        with pytest.raises(TypeError, match=rf"{name} must be an int or a pair of ints, got float 1.0"):
            ops.deform_conv2d(X, OFFSET, W, **{name: 1.0})
        with pytest.raises(TypeError, match=rf"{name} must be an int or a pair of ints, got float 1.0"):
            ops.DeformConv2d(16, 2, 3, **{name: 1.0})

    def test_numpy_integers_are_ints(self):
        assert torch.equal(ops.ps_roi_align(X, ROIS, np.int64(2)), ops.ps_roi_align(X, ROIS, 2))
        assert torch.equal(ops.ps_roi_align(X, ROIS, (np.int32(2), np.int64(2)), np.float32(1.0), np.int16(2)),
                           ops.ps_roi_align(X, ROIS, 2, 1.0, 2))
        assert torch.equal(ops.deform_conv2d(X, OFFSET, W, stride=np.int64(1), padding=np.uint8(0)),
                           ops.deform_conv2d(X, OFFSET, W))
        layer = ops.DeformConv2d(np.int64(16), np.int64(2), np.int64(3))
        assert layer.weight.shape == (2, 16, 3, 3) and type(layer.in_channels) is int

    def test_sampling_ratio_is_an_int(self):
        with pytest.raises(TypeError, match="sampling_ratio must be an int, got float 2.0"):
            ops.ps_roi_align(X, ROIS, 2, 1.0, 2.0)
        with pytest.raises(TypeError, match="sample_per_part must be an int, got float 2.0"):
            ops.deform_ps_roi_pool(X, ROIS, None, 2, sample_per_part=2.0)


class TestNumbers:
    @pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), np.int64(0), np.float16(0.5),
                                       torch.tensor(0.5)])
    def test_numpy_and_tensor_thresholds(self, value):
        boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 40, 40]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        expected = ops.nms(boxes, scores, float(value))
        assert torch.equal(ops.nms(boxes, scores, value), expected)
        assert torch.equal(ops.batched_nms(boxes, scores, torch.zeros(3, dtype=torch.int64), value), expected)

    def test_numpy_spatial_scale_and_trans_std(self):
        out = ops.deform_ps_roi_pool(X, ROIS, torch.zeros(1, 2, 2, 2), 2, np.float32(0.5), trans_std=np.float32(0.1))
        assert torch.equal(out, ops.deform_ps_roi_pool(X, ROIS, torch.zeros(1, 2, 2, 2), 2, 0.5, trans_std=0.1))

    @pytest.mark.parametrize("value", [np.bool_(True), True, "0.5", None, 1j])
    def test_not_numbers(self, value):
        with pytest.raises(TypeError, match="iou_threshold must be a number, got "):
            ops.nms(torch.zeros(1, 4), torch.ones(1), value)


class TestModulesCheckAtConstruction:
    """The same messages as the functions, raised by the constructor."""

    @pytest.mark.parametrize("make,call,message", [
        (lambda: ops.PSRoIPool(2, spatial_scale=0.0), lambda: ops.ps_roi_pool(X, ROIS, 2, 0.0),
         "spatial_scale must be > 0.0, got 0.0"),
        (lambda: ops.PSRoIAlign(2, spatial_scale=float("nan")), lambda: ops.ps_roi_align(X, ROIS, 2, float("nan")),
         "spatial_scale must be a finite number, got nan"),
        (lambda: ops.PSRoIAlign(2, sampling_ratio=2**31), lambda: ops.ps_roi_align(X, ROIS, 2, 1.0, 2**31),
         r"sampling_ratio must be <= 1024 \(samples per bin side; <= 0 for adaptive\), got 2147483648"),
        (lambda: ops.DeformPSRoIPool(2, sample_per_part=0),
         lambda: ops.deform_ps_roi_pool(X, ROIS, None, 2, sample_per_part=0),
         r"sample_per_part must be in \[1, 1024\] \(samples per bin side\), got 0"),
        (lambda: ops.DeformPSRoIPool(2, sample_per_part=-3),
         lambda: ops.deform_ps_roi_pool(X, ROIS, None, 2, sample_per_part=-3),
         r"sample_per_part must be in \[1, 1024\]"),
        (lambda: ops.DeformPSRoIPool(2, trans_std=float("inf")),
         lambda: ops.deform_ps_roi_pool(X, ROIS, None, 2, trans_std=float("inf")),
         "trans_std must be a finite number, got inf"),
        (lambda: ops.DeformConv2d(16, 2, 3, stride=0), lambda: ops.deform_conv2d(X, OFFSET, W, stride=0),
         "stride must be >= 1, got 0"),
        (lambda: ops.DeformConv2d(16, 2, 3, padding=-1), lambda: ops.deform_conv2d(X, OFFSET, W, padding=-1),
         "padding must be >= 0, got -1"),
    ])
    def test_messages(self, make, call, message):
        with pytest.raises(ValueError, match=message):
            make()
        with pytest.raises(ValueError, match=message):
            call()

    @pytest.mark.parametrize("kwargs,error,message", [
        (dict(in_channels=0), ValueError, "in_channels must be >= 1, got 0"),
        (dict(out_channels=-2), ValueError, "out_channels must be >= 1, got -2"),
        (dict(groups=0), ValueError, "groups must be >= 1, got 0"),
        (dict(in_channels=16.0), TypeError, "in_channels must be an int, got float 16.0"),
    ])
    def test_deform_conv_channels(self, kwargs, error, message):
        args = dict(in_channels=16, out_channels=2, kernel_size=3) | kwargs
        with pytest.raises(error, match=message):
            ops.DeformConv2d(**args)

    def test_pack_modules(self):
        with pytest.raises(ValueError, match="offset_groups must be >= 1, got 0"):
            ops.DeformConv2dPack(16, 2, 3, offset_groups=0)
        with pytest.raises(ValueError, match="hidden_dim must be >= 1, got 0"):
            ops.DeformPSRoIPoolPack(2, 3, hidden_dim=0)
        with pytest.raises(ValueError, match="out_channels must be >= 1, got 0"):
            ops.DeformPSRoIPoolPack(0, 3)


class TestBoundedWork:
    def test_sampling_ratio_bound_in_the_kernel_too(self):
        # A direct op call (no Python check) with 2**31 samples per bin side ran
        # for about ten minutes; now the kernel refuses it up front.
        rois = ROIS
        with pytest.raises(ValueError, match=r"sampling_ratio must be <= 1024 \(samples per bin side"):
            torch.ops.scalekit.ps_roi_align(X, rois, 1.0, 2, 2, 2**31, True)
        with pytest.raises(ValueError, match=r"sampling_ratio must be <= 1024"):
            torch.ops.scalekit._ps_roi_align_backward(torch.zeros(1, 4, 2, 2), rois, 1.0, 2, 2, 2**31, True,
                                                      1, 16, 8, 8)
        with pytest.raises(ValueError, match=r"sample_per_part must be in \[1, 1024\], got 1025"):
            torch.ops.scalekit.deform_ps_roi_pool(X, rois, None, 1.0, 2, 2, 2, 2, 2, 2, 1025, 0.1)

    @pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
    def test_conv_arguments_that_would_overflow_sizes(self, name):
        # padding 2**31 - 1 made H_out * W_out overflow int64 (undefined behaviour)
        with pytest.raises(ValueError, match=rf"{name} must be <= 65536, got 2147483647"):
            ops.deform_conv2d(X, OFFSET, W, **{name: 2 ** 31 - 1})
        with pytest.raises(ValueError, match=rf"{name} must be <= 65536, got 2147483647"):
            ops.DeformConv2d(16, 2, 3, **{name: 2 ** 31 - 1})
        args = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1)) | {name: (2 ** 31 - 1, 1)}
        with pytest.raises(ValueError, match=rf"{name} must be <= 65536, got \(2147483647, 1\)"):
            torch.ops.scalekit.deform_conv2d(X, W, OFFSET, None, None, *args["stride"], *args["padding"],
                                             *args["dilation"], 1, 1)

    def test_the_bound_itself_is_accepted(self):
        out = ops.ps_roi_align(X, ROIS, 2, 1.0, 1024)
        torch.testing.assert_close(out, ops.ps_roi_align(X, ROIS, 2, 1.0, 512), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["nms", "soft_nms", "batched_nms", "ps_roi_align"])
def test_checks_trace_with_dynamic_shapes_and_numbers(name):
    # dynamic=True makes float arguments symbolic: the checks must not call
    # math.isnan (or anything else that needs a concrete float) on them.
    torch._dynamo.reset()
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [21, 21, 31, 31]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    idxs = torch.tensor([0, 0, 1, 1])
    fn, args = {
        "nms": (ops.nms, (boxes, scores, 0.5)),
        "soft_nms": (ops.soft_nms, (boxes, scores, 0.3, 0.5, 0.001, "gaussian")),
        "batched_nms": (ops.batched_nms, (boxes, scores, idxs, 0.5)),
        "ps_roi_align": (ops.ps_roi_align, (X, ROIS, 2, 0.5, 2)),
    }[name]
    compiled = torch.compile(fn, dynamic=True, fullgraph=True)
    got, expected = compiled(*args), fn(*args)
    for g, e in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,)):
        assert torch.equal(g, e)
    if name == "nms":  # another threshold: the same graph (or a guarded recompile), the right answer
        assert torch.equal(compiled(boxes, scores, 0.01), ops.nms(boxes, scores, 0.01))
        # fullgraph=True reports an exception raised while tracing as dynamo's own
        # error (torch._dynamo.exc.Unsupported), carrying the check's message.
        with pytest.raises(Exception, match="iou_threshold must be a number, got nan"):
            compiled(boxes, scores, float("nan"))


class TestKernelMessages:
    """The C++ checks' messages, word for word: integers in full, floating point as an ostream
    writes it (%g) unless that reads back as another value (123456789.0 in float32 reads 1.2345679e+08),
    non-finite values and dtype names readable. csrc/common/check.h builds them
    without iostreams (a statically linked libstdc++ crashed in them on a GPU machine)."""

    @pytest.mark.parametrize("call, message", [
        (lambda: torch.ops.scalekit.ps_roi_align(X, ROIS, 1.0, 2, 2, 2**31, True),
         "sampling_ratio must be <= 1024 (samples per bin side; <= 0 for adaptive), got 2147483648"),
        (lambda: torch.ops.scalekit.ps_roi_pool(X, torch.tensor([[0.5, 1e30, -2.5e-7, 2, 123456789.0]]), 1.0, 2, 2),
         "boxes[0] = (0.5, 1e+30, -2.5e-07, 2, 1.2345679e+08) must have finite coordinates and an integral "
         "batch index in [0, 1) (input has 1 images)"),
        (lambda: torch.ops.scalekit.ps_roi_pool(X, torch.tensor([[0.0, float("nan"), -float("inf"), 2, 2]]), 1.0, 2, 2),
         "boxes[0] = (0, nan, -inf, 2, 2) must have finite coordinates"),
        (lambda: torch.ops.scalekit.ps_roi_pool(X.long(), ROIS, 1.0, 2, 2),
         "input must be a floating point tensor, got Long"),
        (lambda: torch.ops.scalekit.deform_conv2d(torch.ones(1, 1, 0, 4), torch.ones(1, 1, 3, 3),
                                                  torch.ones(1, 18, 0, 4), None, None, 1, 1, 1, 1, 1, 1, 1, 1),
         "the output would be empty: input 0x4, kernel 3x3, padding (1, 1), dilation (1, 1)"),
    ])
    def test_numbers_and_dtypes_read_as_written(self, call, message):
        with pytest.raises(ValueError) as err:
            call()
        assert message in str(err.value)


class TestBackwardOpsCheckTheirArguments:
    """torch.ops.scalekit._*_backward can be called directly, without the forward's checks. A
    RoI's batch index decides where the kernel writes: -3 wrote out of bounds (a SIGSEGV on the
    CPU) and 5 of 1 returned zeros, until the backward ops checked the RoIs themselves."""

    @pytest.mark.parametrize("index", [5.0, -3.0, 0.5, float("nan")])
    def test_a_rois_batch_index_outside_the_input_raises(self, index, device):
        g = torch.ones(1, 4, 2, 2, device=device)
        rois = torch.tensor([[index, 0, 0, 4, 4]], device=device)
        x = torch.ones(1, 16, 8, 8, device=device)
        offset = torch.zeros(1, 2, 2, 2, device=device)
        message = r"boxes\[0\] = .* integral batch index in \[0, 1\)"
        with pytest.raises(ValueError, match=message):
            torch.ops.scalekit._ps_roi_pool_backward(g, rois, 1.0, 2, 2, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=message):
            torch.ops.scalekit._ps_roi_align_backward(g, rois, 1.0, 2, 2, 2, True, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=message):
            torch.ops.scalekit._deform_ps_roi_pool_backward(g, x, rois, offset, 1.0, 2, 2, 2, 2, 2, 2, 2, 0.1)
        with pytest.raises(ValueError, match=r"integral batch index in \[0, 0\)"):
            torch.ops.scalekit._ps_roi_pool_backward(g, rois.abs().nan_to_num(), 1.0, 2, 2, 0, 16, 8, 8)

    def test_a_batch_index_just_below_an_integer_is_printed_as_it_is(self, device):
        # six significant digits would print 0.9999999999 as "1", in a message saying it must be integral
        rois = torch.tensor([[0.9999999999, 0, 0, 4, 4]], dtype=torch.float64, device=device)
        with pytest.raises(ValueError, match=r"boxes\[0\] = \(0\.9999999999, 0, 0, 4, 4\) must have"):
            torch.ops.scalekit._ps_roi_pool_backward(torch.ones(1, 4, 2, 2, dtype=torch.float64, device=device),
                                                     rois, 1.0, 2, 2, 1, 16, 8, 8)

    def test_grad_must_have_the_dtype_of_the_rois(self, device):
        # float64 RoIs read in float32 would round a batch index of 0.9999999999 to 1 (the review
        # of the one-kernel CUDA RoI check); grad has the forward output's dtype, which is theirs
        g = torch.ones(1, 4, 2, 2, device=device)
        rois = torch.tensor([[0.9999999999, 0, 0, 4, 4]], dtype=torch.float64, device=device)
        x = torch.ones(1, 16, 8, 8, device=device)
        message = r"grad must have the dtype of boxes \(Double\), got Float"
        with pytest.raises(ValueError, match=message):
            torch.ops.scalekit._ps_roi_pool_backward(g, rois, 1.0, 2, 2, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=message):
            torch.ops.scalekit._ps_roi_align_backward(g, rois, 1.0, 2, 2, 2, True, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=r"grad must have the dtype of boxes \(Float\), got Double"):
            torch.ops.scalekit._deform_ps_roi_pool_backward(g.double(), x, rois.float(), torch.zeros(1, 2, 2, 2, device=device),
                                                            1.0, 2, 2, 2, 2, 2, 2, 2, 0.1)

    def test_shapes_and_sizes_are_checked_as_in_the_forward(self, device):
        g = torch.ones(1, 4, 2, 2, device=device)
        rois = torch.tensor([[0.0, 0, 0, 4, 4]], device=device)
        x = torch.ones(1, 16, 8, 8, device=device)
        with pytest.raises(ValueError, match=r"boxes must have shape \[K, 5\]"):
            torch.ops.scalekit._ps_roi_pool_backward(g, rois[:, :3], 1.0, 2, 2, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=r"must be >= 0, got \(1, 16, -8, 8\)"):
            torch.ops.scalekit._ps_roi_pool_backward(g, rois, 1.0, 2, 2, 1, 16, -8, 8)
        with pytest.raises(ValueError, match="spatial_scale must be a finite number > 0"):
            torch.ops.scalekit._ps_roi_align_backward(g, rois, float("inf"), 2, 2, 2, True, 1, 16, 8, 8)
        with pytest.raises(ValueError, match=r"offset must have shape \[K, 2, part_h, part_w\]"):
            torch.ops.scalekit._deform_ps_roi_pool_backward(g, x, rois, torch.zeros(1, 2, 1, 1, device=device),
                                                            1.0, 2, 2, 2, 2, 2, 2, 2, 0.1)
