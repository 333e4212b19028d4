"""Loading H-DCID model folders with their weights checked: wrong weights never load silently.

``transformers``' ``from_pretrained`` initialises randomly (with a log warning) every weight it does not
find, so a folder with another model's weights, a truncated file or a config whose sizes differ from
the weights would load as a random model. Every loading path of this package (``evaluate``, ``toc``,
``card``, ``push``, the demo) goes through :func:`check_model_folder` first, which reads only the
config and the safetensors headers:

* ``config.json`` present, valid JSON, ``model_type == "hdcid"``, and a valid :class:`HDCIDConfig`;
* the weights: ``model.safetensors`` (or a sharded index with its files), each file's header intact
  and the file exactly as long as its header says (a truncated upload or copy is caught);
* the tensors: exactly the names and shapes of the model that the config describes (built on the
  ``meta`` device, no memory), in the encoder-only form (:class:`HDCIDModel`) or the pretraining form
  (:class:`HDCIDForPreTraining`, encoder under ``hdcid.``).

Any problem is one ``ValueError`` (``FileNotFoundError`` for absent files) naming the folder, the file
and the problem. :func:`load_model` then loads with ``output_loading_info`` and refuses any missing,
unexpected or mismatched key that transformers reports (the only check for a Hub id).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

__all__ = ["check_model_folder", "load_model", "looks_like_local_path", "safetensors_header"]

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def looks_like_local_path(name: str) -> bool:
    """True when ``name`` cannot be a Hub repo id (``org/name`` or ``name``), i.e. is meant as a path."""
    name = str(name)
    return (name.startswith(("/", ".", "~")) or name.endswith(("/", os.sep)) or name.count("/") > 1
            or os.sep != "/" and os.sep in name)


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (dtype, shape)} from a safetensors file's header, after checking that the file is
    complete: the header parses and the file is exactly as long as the tensors it lists."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: not a safetensors file ({size} bytes, shorter than its 8-byte header length)")
        n = int.from_bytes(prefix, "little")
        if n > size - 8 or n > 100 * 2**20:
            raise ValueError(f"{path}: truncated or not a safetensors file (header length {n} bytes, file {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: damaged safetensors header ({err})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: damaged safetensors header (not a JSON object)")
    tensors, end = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, stop) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: damaged safetensors header entry for {name!r}") from None
        if dtype in _DTYPE_BYTES and stop - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise ValueError(f"{path}: tensor {name!r} of shape {list(shape)} {dtype} has {stop - begin} bytes "
                             f"in the header, expected {math.prod(shape) * _DTYPE_BYTES[dtype]}")
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    if size != 8 + n + end:
        raise ValueError(f"{path}: truncated or padded: {size} bytes on disk, its header describes "
                         f"{8 + n + end} bytes (copy or download it again)")
    return tensors


def _weight_files(folder: Path) -> list[Path]:
    single, index = folder / WEIGHTS_NAME, folder / WEIGHTS_INDEX_NAME
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted({folder / name for name in weight_map.values()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{index}: damaged weight index ({err})") from None
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{index}: lists {len(missing)} missing weight file(s), e.g. {missing[0]}")
        return files
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
    hint = f" (found {', '.join(others[:3])}: only safetensors weights are loaded)" if others else ""
    raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME}{hint}")


def _expected_tensors(config) -> tuple[dict, dict]:
    """Names -> shapes of the encoder-only and the pretraining state dicts (meta device)."""
    import torch

    from .modeling import HDCIDForPreTraining

    with torch.device("meta"):
        model = HDCIDForPreTraining(config)
    full = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    prefix = model.base_model_prefix + "."
    encoder = {k[len(prefix):]: s for k, s in full.items() if k.startswith(prefix)}
    return encoder, full


def _describe(names, limit: int = 3) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_model_folder(folder: str | os.PathLike, *, need_pretraining_heads: bool = False):
    """Check an H-DCID model folder (module docstring) without loading its weights; returns its
    :class:`HDCIDConfig`. ``need_pretraining_heads``: the decoders / CPC / CLUB must be there too."""
    from .modeling import HDCIDConfig

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (not a model folder)")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != HDCIDConfig.model_type:
        got = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{config_path}: model_type: expected {HDCIDConfig.model_type!r}, got {got!r} "
                         "(not an H-DCID model folder)")
    try:
        config = HDCIDConfig.from_pretrained(str(folder))
    except (TypeError, KeyError) as err:
        raise ValueError(f"{config_path}: {err}") from None
    found: dict[str, tuple] = {}
    for path in _weight_files(folder):
        found.update({name: shape for name, (_, shape) in safetensors_header(path).items()})
    encoder, full = _expected_tensors(config)
    prefix = "hdcid."
    pretraining_form = any(name.startswith(prefix) for name in found)
    if need_pretraining_heads and not pretraining_form:
        raise ValueError(f"{folder}: holds only the encoder (HDCIDModel); the pretraining heads (decoders, CPC, "
                         "CLUB) are needed here")
    expected = full if pretraining_form else encoder
    missing = expected.keys() - found.keys()
    unexpected = found.keys() - expected.keys()
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's {len(expected)} tensors missing ({_describe(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} tensors the model does not have ({_describe(unexpected)})")
        raise ValueError(f"{folder}: weights do not match config.json: " + "; ".join(parts)
                         + " (weights of another model, or a config edited after saving?)")
    wrong = {name: (found[name], shape) for name, shape in expected.items() if tuple(found[name]) != shape}
    if wrong:
        name, (got, want) = sorted(wrong.items())[0]
        raise ValueError(f"{folder}: {len(wrong)} tensors have other sizes than config.json describes, e.g. {name}: "
                         f"expected {list(want)}, got {list(got)} (config edited after saving?)")
    return config


def load_model(model: str | os.PathLike, model_class=None, **kwargs):
    """``model_class.from_pretrained(model)`` (default :class:`HDCIDModel`) after
    :func:`check_model_folder` for a local folder; refuses whatever transformers reports as missing,
    unexpected or mismatched. A path that cannot be a Hub id and does not exist is a FileNotFoundError
    (not a failure to reach the Hub)."""
    from .modeling import HDCIDForPreTraining, HDCIDModel

    model_class = model_class or HDCIDModel
    name = str(model)
    if Path(name).is_dir():
        check_model_folder(name, need_pretraining_heads=model_class is HDCIDForPreTraining)
    elif looks_like_local_path(name) or Path(name).exists():
        raise FileNotFoundError(f"{name}: no such model folder")
    loaded, info = model_class.from_pretrained(name, output_loading_info=True, **kwargs)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys", "error_msgs") and v}
    unexpected = [k for k in info.get("unexpected_keys", []) if not (
        model_class is HDCIDModel and k.split(".")[0] in ("decoders", "cpc", "club"))]
    if unexpected:
        problems["unexpected_keys"] = unexpected
    if problems:
        raise ValueError(f"{name}: the weights do not match the model: "
                         + "; ".join(f"{k.replace('_', ' ')}: {_describe(map(str, v))}" for k, v in problems.items()))
    return loaded
