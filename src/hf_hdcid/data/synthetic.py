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

    def validate(self, num_frames: int, spatial: int) -> None:
        if not 2 <= self.num_classes <= len(EVENT_CLASSES):
            raise ValueError(f"num_classes: expected an int in [2, {len(EVENT_CLASSES)}], got {self.num_classes}")
        if not 0.0 <= self.secondary_prob <= 1.0:
            raise ValueError(f"secondary_prob: expected a number in [0, 1], got {self.secondary_prob}")
        if not 1 <= self.min_window <= num_frames:
            raise ValueError(f"min_window: expected an int in [1, {num_frames}], got {self.min_window}")
        if not 1 <= self.min_box <= spatial:
            raise ValueError(f"min_box: expected an int in [1, {spatial}], got {self.min_box}")
        for name in ("noise", "nuisance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim: expected a positive int, got {self.latent_dim}")


def _seed(*parts) -> int:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class _NonLinearMap:
    """A fixed random 2-layer map latent -> features: tanh(x W1) W2 (scaled to unit-ish outputs)."""

    def __init__(self, latent_dim: int, out_dim: int, generator: torch.Generator):
        hidden = max(32, latent_dim * 2)
        self.w1 = torch.randn(latent_dim, hidden, generator=generator) / latent_dim ** 0.5
        self.w2 = torch.randn(hidden, out_dim, generator=generator) / hidden ** 0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w1) @ self.w2


class SyntheticAVT:
    """Generator of synthetic clips for an :class:`HDCIDConfig` (its T, S, widths and modalities)."""

    def __init__(self, config: HDCIDConfig, seed: int = 0, spec: SyntheticSpec | None = None):
        self.config, self.seed, self.spec = config, seed, spec or SyntheticSpec()
        self.spec.validate(config.num_frames, config.video_spatial_size)
        g = torch.Generator().manual_seed(_seed("world", seed))
        d = self.spec.latent_dim
        self.prototypes = torch.randn(self.spec.num_classes, d, generator=g) * 2.0  # [C, d]
        self.background = torch.randn(d, generator=g) * 0.5
        self.audio_map = _NonLinearMap(d, config.audio_feature_dim, g)
        self.video_map = _NonLinearMap(d, config.video_feature_dim, g)

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

        def window():
            length = int(torch.randint(spec.min_window, t_len + 1, (1,), generator=g))
            begin = int(torch.randint(0, t_len - length + 1, (1,), generator=g))
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

        def latents(modality_is_audio: bool) -> torch.Tensor:  # [T, d] event content per segment
            z = self.background.expand(t_len, -1).clone()
            z[primary] = self.prototypes[label]
            if secondary is not None and secondary[2] == modality_is_audio:
                z[secondary[1]] = z[secondary[1]] + self.prototypes[secondary[0]]
            return z

        audio = self.audio_map(latents(True) + mic) + spec.noise * torch.randn(t_len, cfg.audio_feature_dim, generator=g)
        # video: the event fills a rectangle of the grid, background elsewhere
        box_h = int(torch.randint(spec.min_box, s + 1, (1,), generator=g))
        box_w = int(torch.randint(spec.min_box, s + 1, (1,), generator=g))
        top = int(torch.randint(0, s - box_h + 1, (1,), generator=g))
        left = int(torch.randint(0, s - box_w + 1, (1,), generator=g))
        cells = torch.zeros(s, s, dtype=torch.bool)
        cells[top:top + box_h, left:left + box_w] = True
        event = latents(False)  # [T, d]
        grid = torch.where(cells[None, :, :, None], event[:, None, None, :], self.background)  # [T, S, S, d]
        video = self.video_map(grid + camera).relu()
        video = video + spec.noise * torch.randn(video.shape, generator=g).abs()
        num_cols = spec.num_classes + 1
        audio_labels = torch.zeros(t_len, num_cols, dtype=torch.int8)
        video_labels = torch.zeros(t_len, num_cols, dtype=torch.int8)
        for labels in (audio_labels, video_labels):
            labels[primary, label] = 1
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


__all__ = ["random_feature_batch", "SyntheticAVT", "SyntheticSpec", "EVENT_CLASSES", "SPLITS", "build_synthetic_shards"]
