"""Ordinary mistakes get a ValueError that names the argument and says what to
pass, or a documented answer (issue 12): boxes in the wrong layout or outside
the image, mismatched tuple layouts, a frame rate of zero, a video of no chunks."""

import math

import numpy as np
import pytest
import torch

from scalekit.chips import ChipDataset, ChipGenerator, chip_stats
from scalekit.sequence import BiLSTMHead, memory_limited_scores, stateful_windows
from scalekit.video import read_video_frames

SIZE = (480, 640)


class TestChipBoxes:
    @pytest.mark.parametrize("box", [[300.0, 200, 30, 40], [10.0, 50, 40, 20], [50.0, 10, 20, 40]])
    def test_reversed_boxes_are_refused_with_the_fix(self, box):
        # [300, 200, 30, 40] is COCO's (x, y, w, h) of the box (300, 200, 330, 240)
        boxes = torch.tensor([[10.0, 10, 40, 40], box])
        with pytest.raises(ValueError, match=r"boxes\[1\] = .* x2 >= x1|x2 >= x1 and y2 >= y1; boxes\[1\]") as e:
            ChipGenerator().positive_chips(boxes, SIZE)
        assert "box_convert(boxes, 'xywh', 'xyxy')" in str(e.value)

    @pytest.mark.parametrize("box", [[700.0, 10, 740, 40], [-50.0, 10, 0, 40], [10.0, 480, 40, 500], [5.0, -9, 9, -1]])
    def test_boxes_wholly_outside_the_image_are_refused(self, box):
        boxes = torch.tensor([[10.0, 10, 40, 40], box])
        with pytest.raises(ValueError, match=r"boxes\[1\] = .* wholly outside the image of \(height, width\) = \(480, 640\)"):
            ChipGenerator().positive_chips(boxes, SIZE)

    def test_boxes_partly_outside_are_clipped_and_covered(self):
        boxes = torch.tensor([[-20.0, -10, 30, 30], [620, 460, 660, 500]])
        chips = ChipGenerator().positive_chips(boxes, SIZE)
        assert {i for c in chips for i in c.gt_index.tolist()} == {0, 1}

    def test_every_positive_chip_holds_a_box_it_can_train_on(self):
        # The defect: a wholly-outside box got a positive chip of its own with no target.
        boxes = torch.tensor([[10.0, 10, 40, 40], [300, 200, 330, 230]])
        for c in ChipGenerator().positive_chips(boxes, SIZE):
            assert c.gt_index.numel() > 0

    def test_proposal_layouts(self):
        gen, boxes = ChipGenerator(), torch.tensor([[10.0, 10, 40, 40]])
        with pytest.raises(ValueError, match=r"proposals must have shape \[N, 4\].*got \[3, 5\].*proposals\[:, :4\]"):
            gen.negative_chips(boxes, SIZE, torch.rand(3, 5) * 100)
        with pytest.raises(ValueError, match=r"proposals must be \(x1, y1, x2, y2\).*proposals\[0\]"):
            gen.negative_chips(boxes, SIZE, torch.tensor([[50.0, 50, 10, 10]]))
        with pytest.raises(ValueError, match=r"boxes must be finite, got boxes\[0\]"):
            gen.positive_chips(torch.tensor([[0.0, 0, math.nan, 4]]), SIZE)
        with pytest.raises(ValueError, match=r"image_size must be \(height, width\)"):
            gen.positive_chips(boxes, 480)
        # empty inputs stay fine, in any empty shape
        assert gen.positive_chips(torch.zeros(0, 4), SIZE) == []
        assert gen.positive_chips(np.zeros((0,)), SIZE) == []

    def test_chip_dataset_refuses_them_at_construction_not_mid_epoch(self):
        data = [(torch.rand(3, 48, 64), {"boxes": torch.tensor([[30.0, 20, 3, 4]]), "labels": torch.tensor([1])})]
        with pytest.raises(ValueError, match="x2 >= x1"):
            ChipDataset(data, ChipGenerator(chip_size=32, stride=8))


class TestChipStatsLayouts:
    def test_coco_annotations_triples_are_refused_with_the_fix(self):
        boxes, labels = torch.tensor([[10.0, 10, 40, 40]]), torch.tensor([1])
        with pytest.raises(ValueError, match=r"annotations\[0\] .*CocoDetection.annotations\(i\).*annotations\(i\)\[::2\]"):
            chip_stats(ChipGenerator(), [(boxes, labels, SIZE)])
        # two labels look like a (height, width) pair only to a careless check
        with pytest.raises(ValueError, match=r"annotations\(i\)\[::2\]"):
            chip_stats(ChipGenerator(), [(boxes.repeat(2, 1), torch.tensor([1, 2]), SIZE)])

    def test_proposals_with_a_score_column_are_refused_with_the_fix(self):
        with pytest.raises(ValueError, match=r"proposals must have shape \[N, 4\].*proposals\[:, :4\]"):
            chip_stats(ChipGenerator(), [(torch.tensor([[10.0, 10, 40, 40]]), SIZE, torch.tensor([[1.0, 1, 9, 9, 0.9]]))])

    def test_wrong_arity(self):
        with pytest.raises(ValueError, match=r"annotations\[1\] must be .*got 1 elements"):
            chip_stats(ChipGenerator(), [(torch.zeros(0, 4), SIZE), (torch.zeros(0, 4),)])

    def test_the_documented_layouts_still_work(self):
        boxes = torch.tensor([[10.0, 10, 40, 40]])
        a = chip_stats(ChipGenerator(), [(boxes, SIZE)])
        b = chip_stats(ChipGenerator(), [(boxes, torch.Size(SIZE), torch.tensor([[1.0, 1, 9, 9]]))])
        assert a["coverage"] == b["coverage"] == 1.0


@pytest.mark.parametrize("fps", [0, -5, 0.0, math.nan, math.inf])
def test_read_video_frames_refuses_a_rate_that_is_not_positive(fps, tmp_path):
    # checked on the call, before any decoding (and whether or not PyAV is installed)
    with pytest.raises(ValueError, match=f"target_fps must be a finite number > 0 .*got {fps}"):
        read_video_frames(tmp_path / "missing.mp4", target_fps=fps)
    with pytest.raises(TypeError, match="target_fps must be a number"):
        read_video_frames(tmp_path / "missing.mp4", target_fps="30")


class TestBiLSTMOnNoChunks:
    def test_zero_chunks_give_empty_scores_and_pass_the_state_through(self):
        torch.manual_seed(0)
        head = BiLSTMHead(8, 4, 3)
        scores, (h, c) = head(torch.zeros(0, 2, 8))
        assert scores.shape == (0, 2, 3)
        assert torch.equal(h, torch.zeros(2, 4)) and torch.equal(c, torch.zeros(2, 4))
        state = (torch.randn(2, 4), torch.randn(2, 4))
        scores, out = head(torch.zeros(0, 2, 8), state, cont=torch.zeros(0, 2))
        assert scores.shape == (0, 2, 3) and out[0] is state[0] and out[1] is state[1]
        # one chunk after zero chunks equals one chunk from the start
        x = torch.randn(1, 2, 8)
        torch.testing.assert_close(head(x, head(x[:0])[1])[0], head(x)[0])
        assert list(stateful_windows(head, torch.zeros(0, 2, 8), 4)) == []
        assert memory_limited_scores(head, torch.zeros(0, 2, 8), 3).shape == (0, 2, 3)

    def test_wrong_feature_width_is_named(self):
        with pytest.raises(ValueError, match=r"x must have in_dim = 8 features per chunk, got \[0, 2, 5\]"):
            BiLSTMHead(8, 4, 3)(torch.zeros(0, 2, 5))
