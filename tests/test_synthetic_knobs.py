"""The SyntheticSpec knobs of the robustness family (issue 14): each does what it says, the defaults
are the bundled benchmark, and a knob leaves the rest of every clip as it was."""

import pytest
import torch

from hf_hdcid import HDCIDConfig
from hf_hdcid.data.synthetic import (ROBUSTNESS_SETTINGS, SyntheticAVT, SyntheticSpec, chi_square_scale,
                                     robustness_spec, shift_window,
                                     smear_over_time)

CFG = HDCIDConfig.tiny()
N = 64


def clips(**knobs):
    return SyntheticAVT(CFG, seed=5, spec=SyntheticSpec(num_classes=10, **knobs)).generate("train", 0, N)


def windows(labels, column):  # [N, T, C+1] -> [N, T] bool
    return labels[:, :, column].bool()


def test_shift_window_moves_and_clips_at_the_edges():
    mask = torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.bool)
    assert shift_window(mask, 2).tolist() == [False, False, False, True, True, False]
    assert shift_window(mask, -1).tolist() == [True, True, False, False, False, False]
    assert shift_window(mask, -3).tolist() == [True, True, False, False, False, False]  # stops at the edge
    assert shift_window(mask, 9).tolist() == [False, False, False, False, True, True]
    assert shift_window(mask, 0) is mask


def test_smear_over_time_is_a_triangular_average_with_replicated_edges():
    z = torch.zeros(6, 1)
    z[2] = 4.0
    assert smear_over_time(z, 1).flatten().tolist() == [0.0, 1.0, 2.0, 1.0, 0.0, 0.0]  # weights 1, 2, 1 / 4
    edge = torch.zeros(6, 1)
    edge[0] = 4.0  # the replicated edge counts twice: (1 + 2) / 4 * 4
    assert smear_over_time(edge, 1).flatten().tolist() == [3.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert torch.equal(smear_over_time(z, 0), z)


def test_chi_square_scale_has_heavy_tails_for_few_degrees_of_freedom():
    g = torch.Generator().manual_seed(0)
    heavy = torch.tensor([chi_square_scale(3, g) for _ in range(4000)])
    light = torch.tensor([chi_square_scale(200, g) for _ in range(4000)])
    # Student-t scale sqrt(nu / chi2_nu): P(scale > 2) = P(chi2_3 < 0.75) = 0.139; for nu = 200 it is ~0
    assert 0.11 < float((heavy > 2).float().mean()) < 0.17
    assert float((light > 1.3).float().mean()) == 0.0 and abs(float(light.median()) - 1.0) < 0.02


def test_defaults_are_the_bundled_benchmark():
    spec = SyntheticSpec()
    assert (spec.av_offset, spec.distractor_prob, spec.nuisance_tail, spec.smear, spec.num_factors,
            spec.nonlinearity, spec.video_shape) == (0, 0.0, 0.0, 0, 0, "tanh", "box")
    explicit = clips(av_offset=0, distractor_prob=0.0, nuisance_tail=0.0, smear=0, num_factors=0)
    plain = clips()
    for key in ("audio", "video", "audio_labels", "video_labels", "label"):
        assert torch.equal(explicit[key], plain[key])


def test_av_offset_shifts_only_the_audio_event_within_k_seconds():
    plain, shifted = clips(), clips(av_offset=2)
    assert torch.equal(plain["video"], shifted["video"]) and torch.equal(plain["video_labels"], shifted["video_labels"])
    assert torch.equal(plain["label"], shifted["label"])
    offsets = []
    for i in range(N):
        c = int(plain["label"][i])
        v, a = windows(shifted["video_labels"][i:i + 1], c)[0], windows(shifted["audio_labels"][i:i + 1], c)[0]
        v_primary = windows(plain["audio_labels"][i:i + 1], c)[0]  # unshifted audio = video primary window
        assert int(a.sum()) == int(v_primary.sum())  # same length
        offsets.append(int(a.nonzero()[0]) - int(v_primary.nonzero()[0]))
        assert v_primary.any() and v.any()
    assert max(abs(o) for o in offsets) <= 2 and min(offsets) < 0 < max(offsets)
    assert sum(o != 0 for o in offsets) > N // 3
    assert not torch.equal(plain["audio"], shifted["audio"])


def test_distractors_are_unlabelled_single_modality_events():
    plain, noisy = clips(), clips(distractor_prob=0.6)
    for key in ("audio_labels", "video_labels", "label"):
        assert torch.equal(plain[key], noisy[key])  # unlabelled
    audio_changed = (plain["audio"] != noisy["audio"]).flatten(1).any(1)
    video_changed = (plain["video"] != noisy["video"]).flatten(1).any(1)
    assert not (audio_changed & video_changed).any()  # one modality per clip
    changed = audio_changed | video_changed
    assert 0.4 < float(changed.float().mean()) < 0.8 and audio_changed.any() and video_changed.any()


def test_heavy_tailed_nuisance_only_rescales_the_nuisance():
    plain, heavy = clips(nuisance=0.0), clips(nuisance=0.0, nuisance_tail=3.0)
    assert torch.equal(plain["audio"], heavy["audio"])  # no nuisance: nothing to rescale
    a, b = clips(nuisance=1.0)["audio"], clips(nuisance=1.0, nuisance_tail=3.0)["audio"]
    assert not torch.equal(a, b)


def test_compositional_classes_are_sums_of_two_shared_factors():
    world = SyntheticAVT(CFG, seed=0, spec=SyntheticSpec(num_classes=12, num_factors=6))
    p = world.prototypes  # [12, 32]
    assert torch.linalg.matrix_rank(p) <= 6  # spanned by 6 factors
    assert torch.cdist(p, p).add(torch.eye(12) * 1e3).min() > 0.5  # every class its own pair
    with pytest.raises(ValueError, match=r"num_factors: .*F\(F-1\)/2 >= num_classes=12.*got 4"):
        SyntheticAVT(CFG, spec=SyntheticSpec(num_classes=12, num_factors=4))


def test_blob_video_is_smooth_and_peaks_inside_the_event():
    world = SyntheticAVT(CFG, seed=1, spec=SyntheticSpec(noise=0.0, nuisance=0.0, secondary_prob=0.0,
                                                         video_shape="blob"))
    box = SyntheticAVT(CFG, seed=1, spec=SyntheticSpec(noise=0.0, nuisance=0.0, secondary_prob=0.0))
    blob, boxed = world.generate("train", 0, 8), box.generate("train", 0, 8)

    def distinct_cells(video):  # per (clip, frame): how many different feature vectors the S x S cells hold
        cells = video.float().flatten(2, 3)  # [N, T, S*S, C]
        return [len(torch.unique(frame, dim=0)) for clip in cells for frame in clip]

    # the box: event cells and background cells, nothing in between; the blob: a gradient of many values
    assert max(distinct_cells(boxed["video"])) == 2
    event_frames = [n for n, c in zip(distinct_cells(blob["video"]), blob["video_labels"][:, :, :-1].flatten(0, 1))
                    if c.any()]
    assert min(event_frames) >= 4 and sorted(event_frames)[len(event_frames) // 2] >= 6


@pytest.mark.parametrize("nonlinearity", ["relu", "sin"])
def test_nonlinearity_changes_the_maps(nonlinearity):
    assert not torch.equal(clips()["audio"], clips(nonlinearity=nonlinearity)["audio"])


@pytest.mark.parametrize("knob, value, message", [
    ("av_offset", 6, r"av_offset: expected an int in \[0, 5\] \(seconds\), got 6"),
    ("distractor_prob", 1.5, r"distractor_prob: expected a number in \[0, 1\], got 1.5"),
    ("num_distractors", 0, r"num_distractors: expected a positive int, got 0"),
    ("nuisance_tail", -1.0, r"nuisance_tail: expected 0 \(Gaussian\) or whole degrees of freedom >= 1, got -1.0"),
    ("nuisance_tail", 2.5, r"nuisance_tail: expected 0 \(Gaussian\) or whole degrees of freedom >= 1, got 2.5"),
    ("smear", -1, r"smear: expected an int in \[0, 5\]"),
    ("nonlinearity", "gelu", r"nonlinearity: expected one of \('tanh', 'relu', 'sin'\), got 'gelu'"),
    ("video_shape", "disc", r"video_shape: expected one of \('box', 'blob'\), got 'disc'"),
])
def test_bad_knobs_name_the_field(knob, value, message):
    with pytest.raises(ValueError, match=message):
        SyntheticAVT(CFG, spec=SyntheticSpec(**{knob: value}))


def test_robustness_settings_are_valid_worlds_on_the_demo_classes():
    assert robustness_spec("bundled") == SyntheticSpec(num_classes=10)  # today's demo world
    hard = robustness_spec("hard")
    assert (hard.num_classes, hard.num_factors, hard.av_offset, hard.distractor_prob, hard.nuisance_tail,
            hard.smear, hard.video_shape) == (12, 6, 1, 0.6, 3.0, 1, "blob")
    for name in ROBUSTNESS_SETTINGS:
        robustness_spec(name).validate(CFG.num_frames, CFG.video_spatial_size)
    with pytest.raises(ValueError, match=r"setting: expected one of \('bundled', .*'hard'\), got 'easy'"):
        robustness_spec("easy")
