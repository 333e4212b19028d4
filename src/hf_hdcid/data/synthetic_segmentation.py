"""A synthetic audio-visual segmentation benchmark (AVS-S4-like) in the world of :class:`SyntheticAVT`.

Every clip is one sounding object of event class ``c`` (single source, as AVSBench-S4):

* **audio** ``[T, audio_feature_dim]``: class ``c``'s latent prototype sounding over the whole clip,
  through the SAME random audio map, microphone nuisance and noise as :class:`~hf_hdcid.data.synthetic.SyntheticAVT`
  of the same ``(config, seed, spec)``, so an H-DCID model pretrained on the synthetic AVT shards
  (``make demo``, ``make-synthetic``) sees the audio of class ``c`` it was trained on;
* **text**: a prompt of class ``c`` from the same templates (``SyntheticAVT.prompt``);
* **frames** ``[5, S, S, 3]`` uint8: a textured, desaturated random background; the sounding object,
  drawn in class ``c``'s own appearance (a saturated hue, a shape among disk / square / diamond /
  triangle and a fill among solid / stripes / checks, all fixed per class and seed) moving along a
  straight line over the five frames; with probability :data:`DISTRACTOR_PROB` a silent distractor
  object of ANOTHER class, moving too, drawn underneath (visible, never in the mask): the segmenter must
  use the query to pick the object that sounds;
* **masks** ``[5, S, S]``: exactly the sounding object's pixels; ``mask_valid`` as AVSBench-S4: train
  clips have only frame 0's mask annotated (the other four are stored as zeros), val / test all five.

Everything is a pure function of ``(seed, split, index)`` (and the config / spec / frame size): the
same clip comes out whatever the order it is generated in. Shards: :mod:`hf_hdcid.data.segmentation`
columns, the query modalities only (audio, and text when a text extractor is given).
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import torch

from ..modeling import HDCIDConfig
from .segmentation import SegmentationSpec
from .synthetic import SyntheticAVT, SyntheticSpec, _seed, chi_square_scale, smear_over_time

SEGMENTATION_SPLITS = ("train", "val", "test")
NUM_FRAMES = 5
SHAPES = ("disk", "square", "diamond", "triangle")
FILLS = ("solid", "stripes", "checks")
DISTRACTOR_PROB = 0.5
MIN_FRAME_SIZE = 8


def _shape_mask(shape: str, rows: np.ndarray, cols: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """[S, S] bool: pixels (centres) inside ``shape`` of half-size ``r`` centred at (cy, cx)."""
    dy, dx = rows[:, None] + 0.5 - cy, cols[None, :] + 0.5 - cx
    if shape == "disk":
        return dy ** 2 + dx ** 2 <= r ** 2
    if shape == "square":
        return np.maximum(np.abs(dy), np.abs(dx)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= 1.2 * r
    return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)  # triangle, apex up, base 2r wide


def _fill(fill: str, colour: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[S, S, 3] float: the object's texture (its colour, and a darker shade for stripes / checks)."""
    dark = colour * 0.45
    size = (len(rows), len(cols), 3)
    if fill == "solid":
        return np.broadcast_to(colour, size)
    period = 2
    if fill == "stripes":
        on = ((cols[None, :] // period) % 2 == 0) & np.ones((len(rows), 1), dtype=bool)
    else:
        on = ((rows[:, None] // period + cols[None, :] // period) % 2) == 0
    return np.where(on[..., None], colour, dark)


class SyntheticSegmentation:
    """Generator of synthetic segmentation clips consistent with ``SyntheticAVT(config, seed, spec)``."""

    def __init__(self, config: HDCIDConfig, seed: int = 0, spec: SyntheticSpec | None = None, frame_size: int = 32,
                 distractor_prob: float = DISTRACTOR_PROB):
        if isinstance(frame_size, bool) or not isinstance(frame_size, int) or frame_size < MIN_FRAME_SIZE:
            raise ValueError(f"frame_size: expected an int >= {MIN_FRAME_SIZE}, got {frame_size!r}")
        if not 0.0 <= distractor_prob <= 1.0:
            raise ValueError(f"distractor_prob: expected a number in [0, 1], got {distractor_prob!r}")
        self.world = SyntheticAVT(config, seed=seed, spec=spec)
        self.config, self.seed, self.spec = config, seed, self.world.spec
        self.frame_size, self.distractor_prob = frame_size, float(distractor_prob)
        self.appearances = self._appearances()

    def _appearances(self) -> list[dict]:
        """Per class: RGB colour (0..1), shape and fill; hues evenly spaced in a seed-dependent order."""
        rng = np.random.default_rng(_seed("segmentation-appearance", self.seed))
        num = self.spec.num_classes
        hues = (np.arange(num) / num + rng.uniform(0, 1 / num)) % 1.0
        order = rng.permutation(num)
        out = []
        for c in range(num):
            colour = np.array(colorsys.hsv_to_rgb(hues[order[c]], 0.9, 0.95))
            out.append({"colour": colour, "shape": SHAPES[c % len(SHAPES)],
                        "fill": FILLS[(c // len(SHAPES)) % len(FILLS)]})
        return out

    def describe(self) -> dict:
        """The settings of the frames and masks (``synthetic.json``'s ``segmentation``; the audio / text
        world is ``self.world.describe()``)."""
        return {"frames": NUM_FRAMES, "frame_size": self.frame_size, "distractor_prob": self.distractor_prob,
                "appearances": [{"class": name, "shape": a["shape"], "fill": a["fill"],
                                 "rgb": [round(float(v), 3) for v in a["colour"]]}
                                for name, a in zip(self.world.class_names, self.appearances)]}

    # ------------------------------------------------------------------------------------------ clips
    def audio(self, label: int, generator: torch.Generator) -> torch.Tensor:
        """[T, A] float32: class ``label`` sounding over the whole clip, by SyntheticAVT's audio machinery
        (prototype latent, microphone nuisance, the world's audio map, feature noise)."""
        cfg, spec, world = self.config, self.spec, self.world
        t_len = cfg.num_frames
        mic = torch.randn(spec.latent_dim, generator=generator) * spec.nuisance
        if spec.nuisance_tail:
            mic = mic * chi_square_scale(spec.nuisance_tail, generator)
        z = smear_over_time(world.prototypes[label].expand(t_len, -1).clone(), spec.smear)  # [T, d]
        noise = spec.noise * torch.randn(t_len, cfg.audio_feature_dim, generator=generator)
        return (world.audio_map(z + mic) + noise).float()

    def _path(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """(centre y [5], centre x [5], half-size r) of an object moving in a straight line."""
        s = self.frame_size
        r = float(rng.uniform(0.17, 0.27) * s)
        start, end = rng.uniform(r, s - r, size=2), rng.uniform(r, s - r, size=2)
        steps = np.linspace(0.0, 1.0, NUM_FRAMES)[:, None]
        centres = start + steps * (end - start)  # [5, 2]
        return centres[:, 0], centres[:, 1], r

    def clip(self, split: str, index: int) -> dict:
        """One clip: the shard record (clip_id, split, label, prompt, audio, frames, masks, mask_valid)
        plus ``object_masks`` [5, S, S] bool (the sounding object's shape, = masks on every frame),
        ``distractor_label`` (int or None) and ``distractor_masks`` [5, S, S] bool (its shape, or all False)."""
        if split not in SEGMENTATION_SPLITS:
            raise ValueError(f"split: expected one of {SEGMENTATION_SPLITS}, got {split!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"index: expected an int >= 0, got {index!r}")
        num = self.spec.num_classes
        g = torch.Generator().manual_seed(_seed("segmentation-clip", self.seed, split, index))
        label = int(torch.randint(0, num, (1,), generator=g))
        audio = self.audio(label, g)
        rng = np.random.default_rng(_seed("segmentation-frames", self.seed, split, index))
        s = self.frame_size
        rows = cols = np.arange(s)
        # background: desaturated base colour + coarse (bilinear 4x4) and fine texture
        base = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.7)))
        coarse = torch.from_numpy(rng.normal(0, 0.12, size=(1, 3, 4, 4))).float()
        coarse = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
        background = base + coarse[0].permute(1, 2, 0).numpy()  # [S, S, 3]
        frames = np.empty((NUM_FRAMES, s, s, 3), dtype=np.float64)
        object_masks = np.zeros((NUM_FRAMES, s, s), dtype=bool)
        distractor_masks = np.zeros((NUM_FRAMES, s, s), dtype=bool)
        ys, xs, r = self._path(rng)
        distractor = None
        if rng.uniform() < self.distractor_prob:
            other = int(rng.integers(0, num - 1))
            distractor = other + int(other >= label)
            for _ in range(8):  # keep the distractor mostly apart from the sounding object at frame 0
                dys, dxs, dr = self._path(rng)
                if np.hypot(dys[0] - ys[0], dxs[0] - xs[0]) > r + dr:
                    break
        own = self.appearances[label]
        texture = _fill(own["fill"], own["colour"], rows, cols)
        for f in range(NUM_FRAMES):
            frame = background + rng.normal(0, 0.04, size=(s, s, 3))
            if distractor is not None:
                look = self.appearances[distractor]
                distractor_masks[f] = _shape_mask(look["shape"], rows, cols, dys[f], dxs[f], dr)
                frame = np.where(distractor_masks[f][..., None], _fill(look["fill"], look["colour"], rows, cols), frame)
            object_masks[f] = _shape_mask(own["shape"], rows, cols, ys[f], xs[f], r)
            frames[f] = np.where(object_masks[f][..., None], texture, frame)  # the sounding object on top
        annotated = 1 if split == "train" else NUM_FRAMES  # AVSBench-S4: train annotates the first frame only
        mask_valid = np.zeros(NUM_FRAMES, dtype=np.int8)
        mask_valid[:annotated] = 1
        masks = np.zeros((NUM_FRAMES, s, s), dtype=np.uint8)
        masks[:annotated] = object_masks[:annotated]
        return {
            "clip_id": f"synthetic-seg-{self.seed}-{split}-{index:07d}", "split": split, "label": label,
            "prompt": self.world.prompt(label, index), "audio": audio,
            "frames": np.clip(np.round(frames * 255), 0, 255).astype(np.uint8), "masks": masks,
            "mask_valid": mask_valid, "object_masks": object_masks, "distractor_label": distractor,
            "distractor_masks": distractor_masks,
        }

    def records(self, split: str, count: int):
        """Yield the shard records of clips ``0 .. count-1`` of ``split`` (without the test-only extras)."""
        for index in range(count):
            clip = self.clip(split, index)
            yield {k: v for k, v in clip.items() if k not in ("object_masks", "distractor_label", "distractor_masks")}


def build_synthetic_segmentation_shards(out_dir, config: HDCIDConfig, clips: dict | None = None, seed: int = 0,
                                        text_extractor=None, frame_size: int = 32, overwrite: bool = False,
                                        spec: SyntheticSpec | None = None) -> Path:
    """Write the synthetic segmentation benchmark as one segmentation shard folder.

    clips: clips per split of ``("train", "val", "test")``, default ``{"train": 200, "val": 64, "test": 64}``.
    config / seed / spec: those of the synthetic AVT shards the H-DCID model was pretrained on (same
    class prototypes, audio map and prompt templates). Stored query modalities: ``audio`` (when in
    ``config.modalities``) and ``text`` when ``text_extractor`` is given (its width must equal
    ``config.text_feature_dim`` and ``num_tokens`` T); the prompt is always stored. A ``synthetic.json``
    describing the world is written next to the shards. Returns the folder.
    """
    from .convert_avs import _check_extractor
    from .schema import FeatureSchema
    from .writing import write_shards

    clips = dict(clips or {"train": 200, "val": 64, "test": 64})
    unknown = [s for s in clips if s not in SEGMENTATION_SPLITS]
    if unknown or not clips or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in clips.values()):
        raise ValueError(f"clips: expected positive counts for splits of {SEGMENTATION_SPLITS}, got {clips}")
    modalities = [m for m in ("audio",) if m in config.modalities]
    if text_extractor is not None:
        _check_extractor(text_extractor, config)
        modalities.append("text")
    if not modalities:
        raise ValueError(f"config.modalities: expected audio (or a text_extractor for text), got "
                         f"{list(config.modalities)} and no text_extractor")
    generator = SyntheticSegmentation(config, seed=seed, spec=spec, frame_size=frame_size)

    def records():
        for split, count in clips.items():
            batch = list(generator.records(split, count))
            if text_extractor is not None:
                text = text_extractor([r["prompt"] for r in batch])  # [N, T, Dt]
            for i, record in enumerate(batch):
                if "audio" not in modalities:
                    record.pop("audio")
                if text_extractor is not None:
                    record["text"] = text[i]
                yield record

    out = write_shards(records, out_dir, FeatureSchema.from_config(config, modalities), with_prompt=True,
                       num_classes=generator.spec.num_classes, overwrite=overwrite,
                       segmentation=SegmentationSpec(NUM_FRAMES, frame_size, frame_size))
    description = {"world": generator.world.describe(), "segmentation": generator.describe(), "clips": clips,
                   "config": config.to_dict()}
    (Path(out) / "synthetic.json").write_text(json.dumps(description, indent=2))
    return out


__all__ = ["DISTRACTOR_PROB", "FILLS", "SEGMENTATION_SPLITS", "SHAPES", "SyntheticSegmentation",
           "build_synthetic_segmentation_shards"]
