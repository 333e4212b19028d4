"""A deterministic synthetic audio-visual-text benchmark with the structure the paper is about.

Every clip has T one-second segments. A *primary* event of one of C classes is present in both
audio and video over one contiguous window (AVE-like); with probability ``secondary_prob`` a
*secondary* event of another class is present in only one modality over its own window (AVVP-like),
so that modality-specific events exist for H-DCID's second layer. Events are per-class latent
prototypes pushed through fixed random non-linear maps into each modality's feature space; the
video event occupies a rectangle of the S x S grid; each clip carries a modality-specific nuisance
(a "microphone" style for audio, a "camera" style for video) and noise. Text is a prompt built
from the primary class name (embedded later by :class:`hf_hdcid.data.text.TextFeatureExtractor`).

Everything is a pure function of (seed, split, clip index): the same clip comes out whatever the
batch it is generated in. Feature widths follow an :class:`HDCIDConfig`.

Beyond that one world, :class:`SyntheticSpec` has the knobs real audio-visual data turns (a family of
worlds; the defaults reproduce the bundled benchmark bit for bit): ``av_offset`` (audio events shifted
against the video by up to +-k seconds), ``distractor_prob`` (unlabelled single-modality events drawn
from a pool of non-class prototypes), ``nuisance_tail`` (Student-t per-clip nuisance: heavy tails),
``smear`` (events fade in and out over neighbouring seconds), ``num_factors`` (compositional classes:
each class is the sum of two of F shared attribute factors), ``nonlinearity`` (the random maps'
activation) and ``video_shape`` (a rectangle or a smooth Gaussian blob). Draws for the knobs come from
their own random streams, so turning one on leaves everything else of a clip as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch

from ..modeling import HDCIDConfig

# the 28 event classes of AVE (Tian et al., 2018), which the paper's downstream AVE task uses
EVENT_CLASSES = (
    "church bell", "man speaking", "dog barking", "airplane", "race car", "woman speaking", "helicopter",
    "violin", "flute", "ukulele", "frying food", "truck", "shofar", "motorcycle", "acoustic guitar",
    "train horn", "clock", "banjo", "goat", "baby crying", "bus", "chainsaw", "cat", "horse",
    "toilet flush", "rodents", "accordion", "mandolin",
)
PROMPT_TEMPLATES = (
    "the sound of {} can be heard clearly in this short clip",
    "a video in which you can see and hear a {}",
    "this recording shows a {} making its typical sound",
    "you can hear and watch a {} during this video",
)
SPLITS = ("pretrain", "train", "test")
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu, "sin": torch.sin}
VIDEO_SHAPES = ("box", "blob")


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of the synthetic world (difficulty and structure)."""

    num_classes: int = 28
    latent_dim: int = 32
    secondary_prob: float = 0.5
    min_window: int = 2
    noise: float = 0.3
    nuisance: float = 0.5
    min_box: int = 2
    av_offset: int = 0
    distractor_prob: float = 0.0
    num_distractors: int = 8
    nuisance_tail: float = 0.0
    smear: int = 0
    num_factors: int = 0
    nonlinearity: str = "tanh"
    video_shape: str = "box"

    def validate(self, num_frames: int, spatial: int) -> None:
        def int_in(name, low, high, unit=""):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name}: expected an int in [{low}, {high}]{unit}, got {value}")

        def probability(name):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {getattr(self, name)}")

        int_in("num_classes", 2, len(EVENT_CLASSES))
        int_in("min_window", 1, num_frames)
        int_in("min_box", 1, spatial)
        int_in("av_offset", 0, num_frames - 1, " (seconds)")
        int_in("smear", 0, num_frames - 1, " (seconds)")
        probability("secondary_prob")
        probability("distractor_prob")
        for name in ("noise", "nuisance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")
        for name in ("latent_dim", "num_distractors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive int, got {getattr(self, name)}")
        tail = self.nuisance_tail
        if tail != 0 and not (tail >= 1 and float(tail).is_integer()):
            raise ValueError(f"nuisance_tail: expected 0 (Gaussian) or whole degrees of freedom >= 1, got {tail}")
        if self.num_factors:
            pairs = self.num_factors * (self.num_factors - 1) // 2
            if self.num_factors < 2 or pairs < self.num_classes:
                raise ValueError(f"num_factors: expected 0 or F >= 2 with F(F-1)/2 >= num_classes={self.num_classes} "
                                 f"(one factor pair per class), got {self.num_factors}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected one of {tuple(NONLINEARITIES)}, got {self.nonlinearity!r}")
        if self.video_shape not in VIDEO_SHAPES:
            raise ValueError(f"video_shape: expected one of {VIDEO_SHAPES}, got {self.video_shape!r}")


# The robustness sweep of issue 14 (``benchmarks/robustness.py``, the demo's robustness line): name ->
# SyntheticSpec overrides on top of num_classes=10 (the demo's world).
ROBUSTNESS_SETTINGS = {
    "bundled": {},
    "offset1": {"av_offset": 1},
    "offset2": {"av_offset": 2},
    "distractors": {"distractor_prob": 0.6},
    "heavy_nuisance": {"nuisance": 1.0, "nuisance_tail": 3.0},
    "smear_blob": {"smear": 1, "video_shape": "blob"},
    "compositional_sin": {"num_classes": 12, "num_factors": 6, "nonlinearity": "sin"},
    "hard": {"num_classes": 12, "num_factors": 6, "av_offset": 1, "distractor_prob": 0.6, "nuisance": 1.0,
             "nuisance_tail": 3.0, "smear": 1, "video_shape": "blob"},
}


def robustness_spec(setting: str) -> SyntheticSpec:
    """The :class:`SyntheticSpec` of one named robustness setting (``ROBUSTNESS_SETTINGS``)."""
    if setting not in ROBUSTNESS_SETTINGS:
        raise ValueError(f"setting: expected one of {tuple(ROBUSTNESS_SETTINGS)}, got {setting!r}")
    return SyntheticSpec(**{"num_classes": 10, **ROBUSTNESS_SETTINGS[setting]})


def shift_window(mask: torch.Tensor, offset: int) -> torch.Tensor:
    """The window ``mask`` [T] moved by ``offset`` seconds (positive: later), its length kept: a window
    that would leave the clip stops at the clip's edge (so an event never vanishes)."""
    if offset == 0:
        return mask
    positions = mask.nonzero().flatten()
    t_len = mask.numel()
    begin = int(positions[0]) + offset
    begin = min(max(begin, 0), t_len - len(positions))
    out = torch.zeros_like(mask)
    out[begin:begin + len(positions)] = True
    return out


def smear_over_time(z: torch.Tensor, width: int) -> torch.Tensor:
    """Temporal smearing: z [T, d] averaged over a triangular window of half-width ``width`` seconds
    (weights width+1-|k|), edges replicated; width 0 returns z."""
    if width == 0:
        return z
    weights = torch.tensor([width + 1 - abs(k) for k in range(-width, width + 1)], dtype=z.dtype)
    weights = weights / weights.sum()
    padded = torch.cat([z[:1].expand(width, -1), z, z[-1:].expand(width, -1)])  # [T + 2w, d]
    return sum(w * padded[i:i + z.shape[0]] for i, w in enumerate(weights))


def chi_square_scale(dof: int, generator: torch.Generator) -> float:
    """sqrt(dof / X) for X ~ chi-square(dof), a sum of ``dof`` squared standard normals (the
    Student-t mixing scale: heavy-tailed for few degrees of freedom)."""
    chi2 = float(torch.randn(int(dof), generator=generator).pow(2).sum())
    return (dof / max(chi2, 1e-12)) ** 0.5


def _seed(*parts) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class _NonLinearMap:
    """A fixed random 2-layer map latent -> features: act(x W1) W2 (scaled to unit-ish outputs)."""

    def __init__(self, latent_dim: int, out_dim: int, generator: torch.Generator, nonlinearity: str = "tanh"):
        hidden = max(32, latent_dim * 2)
        self.w1 = torch.randn(latent_dim, hidden, generator=generator) / latent_dim ** 0.5
        self.w2 = torch.randn(hidden, out_dim, generator=generator) / hidden ** 0.5
        self.act = NONLINEARITIES[nonlinearity]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x @ self.w1) @ self.w2


class SyntheticAVT:
    """Generator of synthetic clips for an :class:`HDCIDConfig` (its T, S, widths and modalities)."""

    def __init__(self, config: HDCIDConfig, seed: int = 0, spec: SyntheticSpec | None = None):
        self.config, self.seed, self.spec = config, seed, spec or SyntheticSpec()
        self.spec.validate(config.num_frames, config.video_spatial_size)
        g = torch.Generator().manual_seed(_seed("world", seed))
        d = self.spec.latent_dim
        self.prototypes = torch.randn(self.spec.num_classes, d, generator=g) * 2.0  # [C, d]
        self.background = torch.randn(d, generator=g) * 0.5
        self.audio_map = _NonLinearMap(d, config.audio_feature_dim, g, self.spec.nonlinearity)
        self.video_map = _NonLinearMap(d, config.video_feature_dim, g, self.spec.nonlinearity)
        # the knobs draw from their own streams: the default world stays the bundled benchmark
        extra = torch.Generator().manual_seed(_seed("world-knobs", seed))
        if self.spec.num_factors:
            # compositional classes: class c = factor_i + factor_j for its own pair (i < j) of F factors
            factors = torch.randn(self.spec.num_factors, d, generator=extra) * 2.0 / 2 ** 0.5  # [F, d]
            pairs = torch.combinations(torch.arange(self.spec.num_factors), 2)  # [F(F-1)/2, 2]
            chosen = pairs[torch.randperm(len(pairs), generator=extra)[: self.spec.num_classes]]
            self.prototypes = factors[chosen].sum(1)  # [C, d]
        self.distractors = torch.randn(self.spec.num_distractors, d, generator=extra) * 2.0  # [K, d], no class

    @property
    def class_names(self) -> tuple[str, ...]:
        return EVENT_CLASSES[: self.spec.num_classes]

    def prompt(self, label: int, index: int) -> str:
        """The clip's text: a ~10-word sentence about its primary class."""
        template = PROMPT_TEMPLATES[index % len(PROMPT_TEMPLATES)]
        return template.format(self.class_names[label])

    def generate(self, split: str, start: int, count: int) -> dict:
        """Clips ``start .. start+count-1`` of ``split`` as a dict of batched tensors:
        video [N, T, S, S, C] float16, audio [N, T, A] float32, label [N] (primary class),
        audio_labels / video_labels [N, T, C+1] int8 multi-hot (last column = background),
        prompt (list of N str), clip_id (list of N str)."""
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        if start < 0 or count < 1:
            raise ValueError(f"start/count: expected start >= 0 and count >= 1, got {start}, {count}")
        clips = [self._clip(split, start + i) for i in range(count)]
        out = {key: torch.stack([c[key] for c in clips]) for key in ("video", "audio", "label", "audio_labels",
                                                                       "video_labels")}
        out["prompt"] = [c["prompt"] for c in clips]
        out["clip_id"] = [c["clip_id"] for c in clips]
        return out

    def records(self, split: str, count: int, batch_size: int = 64):
        """Yield ``count`` clips of ``split`` one dict at a time (the shard writer's input)."""
        for start in range(0, count, batch_size):
            batch = self.generate(split, start, min(batch_size, count - start))
            for i in range(len(batch["clip_id"])):
                yield {key: value[i] for key, value in batch.items()} | {"split": split}

    def _clip(self, split: str, index: int) -> dict:
        cfg, spec = self.config, self.spec
        t_len, s = cfg.num_frames, cfg.video_spatial_size
        g = torch.Generator().manual_seed(_seed("clip", self.seed, split, index))

        def window(generator=g):
            length = int(torch.randint(spec.min_window, t_len + 1, (1,), generator=generator))
            begin = int(torch.randint(0, t_len - length + 1, (1,), generator=generator))
            mask = torch.zeros(t_len, dtype=torch.bool)
            mask[begin:begin + length] = True
            return mask

        label = int(torch.randint(0, spec.num_classes, (1,), generator=g))
        primary = window()  # [T] present in audio and video
        secondary = None
        if float(torch.rand(1, generator=g)) < spec.secondary_prob:
            other = int(torch.randint(0, spec.num_classes - 1, (1,), generator=g))
            other += int(other >= label)
            in_audio = bool(torch.rand(1, generator=g) < 0.5)
            secondary = (other, window(), in_audio)
        mic = torch.randn(spec.latent_dim, generator=g) * spec.nuisance
        camera = torch.randn(spec.latent_dim, generator=g) * spec.nuisance
        # ------------------------------------------------ the knobs (own stream, drawn in a fixed order)
        k = torch.Generator().manual_seed(_seed("clip-knobs", self.seed, split, index))
        offset = int(torch.randint(-spec.av_offset, spec.av_offset + 1, (1,), generator=k)) if spec.av_offset else 0
        audio_primary = shift_window(primary, offset)  # [T] the audio event, `offset` seconds after the video's
        distractor = None
        if spec.distractor_prob and float(torch.rand(1, generator=k)) < spec.distractor_prob:
            which = int(torch.randint(0, spec.num_distractors, (1,), generator=k))
            distractor = (which, window(k), bool(torch.rand(1, generator=k) < 0.5))  # unlabelled, one modality
        if spec.nuisance_tail:
            # multivariate Student-t: one chi-square scale per clip and modality -> heavy-tailed magnitudes
            for_mic, for_camera = (chi_square_scale(spec.nuisance_tail, k) for _ in range(2))
            mic, camera = mic * for_mic, camera * for_camera

        def latents(modality_is_audio: bool) -> torch.Tensor:  # [T, d] event content per segment
            z = self.background.expand(t_len, -1).clone()
            z[audio_primary if modality_is_audio else primary] = self.prototypes[label]
            if secondary is not None and secondary[2] == modality_is_audio:
                z[secondary[1]] = z[secondary[1]] + self.prototypes[secondary[0]]
            if distractor is not None and distractor[2] == modality_is_audio:
                z[distractor[1]] = z[distractor[1]] + self.distractors[distractor[0]]
            return smear_over_time(z, spec.smear)

        audio = self.audio_map(latents(True) + mic) + spec.noise * torch.randn(t_len, cfg.audio_feature_dim, generator=g)
        # video: the event fills a rectangle of the grid (or a smooth blob), background elsewhere
        box_h = int(torch.randint(spec.min_box, s + 1, (1,), generator=g))
        box_w = int(torch.randint(spec.min_box, s + 1, (1,), generator=g))
        top = int(torch.randint(0, s - box_h + 1, (1,), generator=g))
        left = int(torch.randint(0, s - box_w + 1, (1,), generator=g))
        event = latents(False)  # [T, d]
        if spec.video_shape == "blob":
            # a Gaussian blob centred in the box, as wide as the box: weight 1 at the centre, -> 0 outside
            rows, cols = torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32)
            cy, cx = top + (box_h - 1) / 2, left + (box_w - 1) / 2
            weight = torch.exp(-((rows[:, None] - cy) / (box_h / 2)) ** 2 / 2 - ((cols[None, :] - cx) / (box_w / 2)) ** 2 / 2)
            weight = weight[None, :, :, None]  # [1, S, S, 1]
            grid = self.background + weight * (event[:, None, None, :] - self.background)  # [T, S, S, d]
        else:
            cells = torch.zeros(s, s, dtype=torch.bool)
            cells[top:top + box_h, left:left + box_w] = True
            grid = torch.where(cells[None, :, :, None], event[:, None, None, :], self.background)  # [T, S, S, d]
        video = self.video_map(grid + camera).relu()
        video = video + spec.noise * torch.randn(video.shape, generator=g).abs()
        num_cols = spec.num_classes + 1
        audio_labels = torch.zeros(t_len, num_cols, dtype=torch.int8)
        video_labels = torch.zeros(t_len, num_cols, dtype=torch.int8)
        audio_labels[audio_primary, label] = 1
        video_labels[primary, label] = 1
        if secondary is not None:
            target = audio_labels if secondary[2] else video_labels
            target[secondary[1], secondary[0]] = 1
        for labels in (audio_labels, video_labels):
            labels[:, -1] = (labels[:, :-1].sum(1) == 0).to(torch.int8)
        return {
            "clip_id": f"synthetic-{self.seed}-{split}-{index:07d}",
            "video": video.to(torch.float16),
            "audio": audio.float(),
            "label": torch.tensor(label),
            "audio_labels": audio_labels,
            "video_labels": video_labels,
            "prompt": self.prompt(label, index),
        }

    def describe(self) -> dict:
        """The settings that define this world (for dataset cards)."""
        return {"seed": self.seed, **asdict(self.spec), "num_frames": self.config.num_frames,
                "video_spatial_size": self.config.video_spatial_size, "classes": list(self.class_names)}




def build_synthetic_shards(out_dir, config: HDCIDConfig, clips: dict | None = None, seed: int = 0,
                           text_extractor=None, spec: SyntheticSpec | None = None, overwrite: bool = False,
                           batch_size: int = 64):
    """Write the synthetic benchmark as one shard folder (schema of :mod:`hf_hdcid.data.shards`).

    clips: clips per split, default ``{"pretrain": 512, "train": 256, "test": 256}``; pretraining clips
    are written unlabelled (label -1, segment labels -1). Text: with ``"text"`` in the config's
    modalities, prompts are embedded by ``text_extractor`` (a :class:`TextFeatureExtractor`, whose
    width must equal ``config.text_feature_dim``) and stored with the prompt. A ``synthetic.json``
    describing the world and the config is written next to the shards. Returns the folder.
    """
    import json
    from pathlib import Path

    from .shards import write_shards

    clips = dict(clips or {"pretrain": 512, "train": 256, "test": 256})
    unknown = [s for s in clips if s not in SPLITS]
    if unknown or not clips or any(not isinstance(n, int) or n < 1 for n in clips.values()):
        raise ValueError(f"clips: expected positive counts for splits of {SPLITS}, got {clips}")
    with_text = "text" in config.modalities
    if with_text:
        if text_extractor is None:
            raise ValueError("text_extractor: expected a TextFeatureExtractor for a model with text, got None")
        if text_extractor.num_tokens != config.num_frames:
            raise ValueError(f"text_extractor.num_tokens: expected config.num_frames={config.num_frames}, "
                             f"got {text_extractor.num_tokens}")
        if text_extractor.hidden_size != config.text_feature_dim:
            raise ValueError(f"config.text_feature_dim: expected the text model's width "
                             f"{text_extractor.hidden_size}, got {config.text_feature_dim}")
    world = SyntheticAVT(config, seed=seed, spec=spec)
    label_width = world.spec.num_classes + 1

    def records():
        for split, count in clips.items():
            for start in range(0, count, batch_size):
                batch = world.generate(split, start, min(batch_size, count - start))
                text = text_extractor(batch["prompt"]) if with_text else None
                for i, clip_id in enumerate(batch["clip_id"]):
                    labelled = split != "pretrain"
                    record = {"clip_id": clip_id, "split": split, "prompt": batch["prompt"][i],
                              "label": int(batch["label"][i]) if labelled else -1}
                    for m, col in (("audio", "audio_labels"), ("video", "video_labels")):
                        if m in config.modalities:
                            record[m] = batch[m][i]
                            record[col] = batch[col][i] if labelled else torch.full_like(batch[col][i], -1)
                    if with_text:
                        record["text"] = text[i]
                    yield record

    out = write_shards(records, out_dir, config, with_prompt=True, label_width=label_width,
                       num_classes=world.spec.num_classes, overwrite=overwrite)
    description = {"world": world.describe(), "clips": clips, "config": config.to_dict()}
    (Path(out) / "synthetic.json").write_text(json.dumps(description, indent=2))
    return out


def random_feature_batch(config: HDCIDConfig, batch_size: int, generator: torch.Generator) -> dict:
    """Random features of every modality of ``config`` (all three are returned) driven by one shared
    latent event per (sample, time step), in memory: no files, no text model (benchmarks and tests).
    audio [B, T, A], video [B, T, S, S, C] (non-negative), text [B, T, text_feature_dim]."""
    t, s = config.num_frames, config.video_spatial_size
    events = torch.randint(0, 4, (batch_size, t), generator=generator)
    onehot = torch.nn.functional.one_hot(events, 4).float()  # [B, T, 4]

    def view(dim):
        proj = torch.randn(4, dim, generator=generator)
        return onehot @ proj + 0.1 * torch.randn(batch_size, t, dim, generator=generator)

    video = view(s * s * config.video_feature_dim).view(batch_size, t, s, s, -1).relu()
    return {"audio": view(config.audio_feature_dim), "video": video, "text": view(config.text_feature_dim)}


__all__ = ["random_feature_batch", "SyntheticAVT", "SyntheticSpec", "EVENT_CLASSES", "SPLITS", "NONLINEARITIES",
           "VIDEO_SHAPES", "build_synthetic_shards", "shift_window", "smear_over_time", "chi_square_scale"]
