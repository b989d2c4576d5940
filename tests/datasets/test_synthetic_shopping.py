import numpy as np
import pytest
import torch

from scalekit.datasets.synthetic import SHOPPING_ACTIONS, make_synthetic_shopping, save_video_dataset
from scalekit.evaluation import read_class_segments, read_segments_csv

REACH, RETRACT, HAND_IN, PRODUCT, SHELF = range(1, 6)  # chunk labels (class + 1)


def test_seeded_and_labels_match_ground_truth():
    v = make_synthetic_shopping(num_chunks=30, seed=4)
    again = make_synthetic_shopping(num_chunks=30, seed=4)
    assert torch.equal(v["frames"], again["frames"]) and torch.equal(v["chunk_labels"], again["chunk_labels"])
    assert not torch.equal(v["frames"], make_synthetic_shopping(num_chunks=30, seed=5)["frames"])
    assert v["frames"].shape == (180, 3, 64, 80) and 0 <= v["frames"].min() and v["frames"].max() <= 1
    rebuilt = torch.zeros(30, dtype=torch.int64)
    for c, (a, b) in zip(v["ground_truth"]["labels"], v["ground_truth"]["segments"]):
        assert a % 6 == 0 and (b + 1) % 6 == 0  # inclusive frame ranges on chunk boundaries
        rebuilt[int(a) // 6 : (int(b) + 1) // 6] = int(c) + 1
    assert torch.equal(rebuilt, v["chunk_labels"])


def test_actions_follow_the_grammar():
    labels = torch.cat([make_synthetic_shopping(num_chunks=40, seed=s, num_distractors=0)["chunk_labels"]
                        for s in range(6)]).tolist()
    actions = [c for i, c in enumerate(labels) if c and (i == 0 or labels[i - 1] != c)]  # segment starts
    for prev, nxt in zip(actions, actions[1:]):
        if prev == REACH:
            assert nxt == HAND_IN
        if nxt == RETRACT:
            assert prev == HAND_IN
        if nxt == PRODUCT:
            assert prev == RETRACT
    assert set(actions) == {REACH, RETRACT, HAND_IN, PRODUCT, SHELF}


def test_actions_move_only_the_hand_and_distractors_move_elsewhere():
    v = make_synthetic_shopping(num_chunks=40, seed=2, num_distractors=0)
    frames, labels = v["frames"], v["chunk_labels"]
    far_motion = []
    for t in range(frames.shape[0] - 1):
        if labels[t // 6] == 0 or labels[(t + 1) // 6] != labels[t // 6]:
            continue
        changed = (frames[t + 1] - frames[t]).abs().sum(0) > 0
        ys, xs = torch.nonzero(changed, as_tuple=True)
        d = torch.stack([xs, ys], 1).float() - v["hand"][t]
        far_motion.append(bool((d.norm(dim=1) > 6).any()))  # hand radius 3 + a step of motion
    assert far_motion and not any(far_motion)  # during actions, only pixels next to the hand change
    noisy = make_synthetic_shopping(num_chunks=40, seed=2, num_distractors=3)
    far = []
    for t in [t for t in range(239) if noisy["chunk_labels"][t // 6] == HAND_IN]:
        diff = (noisy["frames"][t + 1] - noisy["frames"][t]).abs().sum(0) > 0
        ys, xs = torch.nonzero(diff, as_tuple=True)
        far.append((torch.stack([xs, ys], 1).float() - noisy["hand"][t]).norm(dim=1).max())
    dist = torch.stack(far)
    assert (dist > 15).float().mean() > 0.5  # distractors move far from the actor


def _turning(hand):
    d = hand[1:] - hand[:-1]
    return torch.sign(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0])  # + clockwise on screen (y down)


def test_inspect_product_and_shelf_circle_in_opposite_directions():
    seen = {PRODUCT: [], SHELF: []}
    for s in range(6):
        v = make_synthetic_shopping(num_chunks=40, seed=s, num_distractors=0)
        for i, c in enumerate(v["chunk_labels"].tolist()):
            if c in seen:
                seen[c].append(_turning(v["hand"][i * 6 : i * 6 + 6]))
    product, shelf = torch.cat(seen[PRODUCT]), torch.cat(seen[SHELF])
    assert product.numel() and shelf.numel()
    assert (product > 0).all() and (shelf < 0).all()


def test_bad_size_names_the_argument():
    with pytest.raises(ValueError, match="size"):
        make_synthetic_shopping(size=(16, 20))
    with pytest.raises(ValueError, match="num_chunks"):
        make_synthetic_shopping(num_chunks=0)


def test_save_video_dataset_round_trips_through_the_readers(tmp_path):
    videos = {f"v{i}": make_synthetic_shopping(num_chunks=20, seed=i) for i in range(2)}
    paths = save_video_dataset(videos, tmp_path, SHOPPING_ACTIONS, video_files=False)
    from_json, _ = read_class_segments(paths["annotations.json"], classes=SHOPPING_ACTIONS)
    from_csv, _ = read_segments_csv(paths["annotations.csv"], classes=SHOPPING_ACTIONS)
    for vid, v in videos.items():
        gt = v["ground_truth"]
        order = np.lexsort((gt["segments"][:, 0], gt["labels"]))
        for got in (from_json[vid], from_csv[vid]):
            back = np.lexsort((got["segments"][:, 0], got["labels"]))
            assert got["labels"][back].tolist() == gt["labels"][order].tolist()
            assert got["segments"][back].tolist() == gt["segments"][order].tolist()
    bad = {"v": {"ground_truth": {"labels": [7], "segments": [[0, 5]]}}}
    with pytest.raises(ValueError, match="label 7"):
        save_video_dataset(bad, tmp_path, SHOPPING_ACTIONS, video_files=False)


def test_save_video_dataset_writes_decodable_mp4(tmp_path):
    pytest.importorskip("av")
    from scalekit.video import read_video_frames

    v = make_synthetic_shopping(num_chunks=4, seed=0)
    path = save_video_dataset({"v": v}, tmp_path, SHOPPING_ACTIONS, video_files=True)["videos"][0]
    frames = list(read_video_frames(path))
    assert len(frames) == 24 and frames[0].shape == (3, 64, 80)
    assert (frames[10] - v["frames"][10]).abs().mean() < 0.08  # lossy, but the same pictures


def _body_pixels(v, frame=0, r=3):
    """The actor's body texture around its centre in one frame (the hand rests outside it)."""
    x, y = v["actor"][frame].round().long().tolist()
    return v["frames"][frame, :, y - r : y + r + 1, x - r : x + r + 1]


def test_subject_none_keeps_the_videos_pixels():
    # Pinned before the subject option existed: videos without a subject did not change.
    frames = make_synthetic_shopping(num_chunks=16, seed=0)["frames"]
    digest = __import__("hashlib").sha1((frames * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()
    assert digest[:16] == "e3f112e4f33b3811"


def test_subject_fixes_the_actor_and_nothing_else():
    a, b = (make_synthetic_shopping(num_chunks=16, seed=s, subject=3) for s in (1, 2))
    other = make_synthetic_shopping(num_chunks=16, seed=1, subject=4)
    plain = make_synthetic_shopping(num_chunks=16, seed=1)
    assert a["subject"] == 3 and plain["subject"] is None
    assert torch.equal(_body_pixels(a), _body_pixels(b))  # one subject: one look, in every video
    assert not torch.equal(_body_pixels(a), _body_pixels(other))
    assert not torch.equal(_body_pixels(a), _body_pixels(plain))
    # The seed still draws the scene, the script and the walk, exactly as without a subject.
    assert torch.equal(a["chunk_labels"], plain["chunk_labels"]) and torch.equal(a["actor"], plain["actor"])
    assert not torch.equal(a["chunk_labels"], b["chunk_labels"])
    shelf = 80 // 8  # the left shelf, away from the actor: same pixels
    assert torch.equal(a["frames"][:, :, :, :shelf - 4], plain["frames"][:, :, :, :shelf - 4])
    # The subject's style: its hand moves differently in the same script.
    assert not torch.equal(a["hand"], plain["hand"])


@pytest.mark.parametrize("bad", [-1, 1.5, True, "a"])
def test_subject_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="subject must be None or a non-negative integer"):
        make_synthetic_shopping(num_chunks=4, subject=bad)
