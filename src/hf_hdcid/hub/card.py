"""The model card of a saved H-DCID / DCID folder (``hf-hdcid card``): :func:`render_model_card` reads
``config.json``, the safetensors headers, ``training_info.json``, ``eval_results.json`` and the
figures present and fills ``model_cards/hdcid_card.md``; :func:`write_model_card` writes it as
``README.md``. The folder verbs (:mod:`hf_hdcid.hub.folder`) call it whenever they change the folder.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from ..modeling.configuration_hdcid import PAPER_VS_ORIGINAL

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
TRAINING_INFO_FILE = "training_info.json"
EVAL_RESULTS_FILE = "eval_results.json"

# Figures embedded in the card when present: file, heading, caption.
FIGURES = (
    ("toc_cosine.png", "TOC heat map",
     "Code-to-code cosine similarity of each layer's codebook over all channels (left) and over the TOC "
     "channels only (right), as in the paper's Fig. 2."),
    ("loss_curves.png", "Training losses", "Pretraining losses per layer over the optimiser steps."),
    ("results.png", "Results", "Evaluation results of this model."),
)

PAPER_TITLE = ("Unlocking the Potential of Multimodal Unified Discrete Representation through Training-Free "
               "Codebook Optimization and Hierarchical Alignment")
PAPER_AUTHORS = ("Hai Huang", "Yan Xia", "Shengpeng Ji", "Shulei Wang", "Hanting Wang", "Jieming Zhu",
                 "Zhenhua Dong", "Zhou Zhao")
PAPER_URL = "https://arxiv.org/abs/2403.05168"
ORIGINAL_CODE_URL = "https://github.com/haihuangcode/TOC_H-DCID"
BIBTEX = """@article{huang2024unlocking,
  title   = {Unlocking the Potential of Multimodal Unified Discrete Representation through Training-Free Codebook Optimization and Hierarchical Alignment},
  author  = {Huang, Hai and Xia, Yan and Ji, Shengpeng and Wang, Shulei and Wang, Hanting and Zhu, Jieming and Dong, Zhenhua and Zhao, Zhou},
  journal = {arXiv preprint arXiv:2403.05168},
  year    = {2024}
}
@inproceedings{xia2023achieving,
  title     = {Achieving Cross Modal Generalization with Multimodal Unified Representation},
  author    = {Xia, Yan and Huang, Hai and Zhu, Jieming and Zhao, Zhou},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {36},
  year      = {2023}
}"""

# The HDCIDConfig options where the paper and the authors' code differ, with what each value means
# (read from the one table, modeling/configuration_hdcid.PAPER_VS_ORIGINAL); the card lists those
# that differ from HDCIDConfig.hdcid().
BEHAVIOUR_OPTIONS = {name: meaning for name, (_, meaning) in PAPER_VS_ORIGINAL.items()}


def paper_vs_original_table() -> str:
    """PAPER_VS_ORIGINAL as the Markdown table of the README (between its ``paper-vs-original`` markers):
    option, ``HDCIDConfig.hdcid()`` default, the original code's value, meaning."""
    from ..modeling.configuration_hdcid import HDCIDConfig

    defaults = HDCIDConfig.hdcid()
    lines = ["| Option | `hdcid()` default | Original code | Meaning |", "|---|---|---|---|"]
    for name, (original, meaning) in PAPER_VS_ORIGINAL.items():
        value = (", ".join(f"`{_cell(v)}` ({'H-DCID' if k == 'hdcid' else 'DCID'})" for k, v in original.items())
                 if isinstance(original, dict) else f"`{_cell(original)}`")
        lines.append(f"| `{name}` | `{_cell(getattr(defaults, name))}` | {value} | {meaning} |")
    return "\n".join(lines) + "\n"

# pretrain_config keys about where and how a run was stored, not how the model was trained
_RUN_LOGISTICS = {"data", "output_dir", "resume_from_checkpoint", "progress", "num_workers", "save_rank_states",
                  "report_to", "plot", "push_to_hub", "hub_model_id", "hub_private", "log_every",
                  "save_every_steps"}

EVAL_REQUIRED = ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
EVAL_OPTIONAL = ("task_name", "dataset_split", "dataset_config", "metric_name", "source_name", "source_url")

# the codebook-health families of the card (names built by modeling_hdcid.term_name)
_HEALTH_FAMILIES = ("active_codes", "equal_num", "perplexity")
_GENERIC_FOLDER_NAMES = {"", ".", "model", "final", "final_model", "checkpoint", "output", "outputs"}


# =============================================================================================
# Reading a model folder
# =============================================================================================
def _read_json(path: Path) -> Any:
    """JSON content of ``path``; ValueError naming the file if it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: expected valid JSON, got a parse error ({err})") from None


def weight_files(model_dir: str | os.PathLike) -> list[str]:
    """Names of the top-level ``*.safetensors`` files of a model folder, sorted."""
    return sorted(p.name for p in Path(model_dir).iterdir() if p.is_file() and p.name.endswith(".safetensors"))


def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """The folder as a Path; ValueError unless it exists and holds ``config.json`` and safetensors weights."""
    folder = Path(model_dir)
    expected = f"a save_pretrained folder with {CONFIG_FILE} and *.safetensors weights"
    if not folder.is_dir():
        state = "a file" if folder.exists() else "a path that does not exist"
        raise ValueError(f"model_dir: expected {expected}, got {str(folder)!r} ({state})")
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(f"model_dir: expected {expected}, got {str(folder)!r} without {CONFIG_FILE}")
    if not weight_files(folder):
        raise ValueError(f"model_dir: expected {expected}, got {str(folder)!r} without *.safetensors weights")
    return folder


def _load_config(folder: Path):
    """``config.json`` as a validated HDCIDConfig, plus the raw dict."""
    raw = _read_json(folder / CONFIG_FILE)
    if not isinstance(raw, dict) or raw.get("model_type") != "hdcid":
        got = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
        raise ValueError(f"{folder / CONFIG_FILE}: expected model_type 'hdcid', got {got!r}")
    from ..modeling.configuration_hdcid import HDCIDConfig

    return HDCIDConfig.from_dict(raw), raw


# =============================================================================================
# Evaluation results
# =============================================================================================
def eval_results_from_dicts(results: Any, source: str = "eval results") -> list:
    """Check a list of dicts with :class:`huggingface_hub.EvalResult` fields and build the EvalResults.

    Required: task_type, dataset_type, dataset_name, metric_type (non-empty strings) and metric_value
    (a finite number); optional: task_name, dataset_split, dataset_config, metric_name, source_name,
    source_url (strings; source_name needs source_url). Anything else raises ValueError naming the
    entry index, the field, what was expected and what was given.
    """
    from huggingface_hub import EvalResult

    if not isinstance(results, list):
        raise ValueError(f"{source}: expected a list of dicts with the fields of huggingface_hub.EvalResult, "
                         f"got {type(results).__name__}")
    allowed = EVAL_REQUIRED + EVAL_OPTIONAL
    out = []
    for i, entry in enumerate(results):
        def fail(field, expected, actual):
            raise ValueError(f"{source} entry {i}: field {field!r}: expected {expected}, got {actual}")

        if not isinstance(entry, dict):
            raise ValueError(f"{source} entry {i}: expected a dict with the fields {list(EVAL_REQUIRED)}, "
                             f"got {type(entry).__name__} {entry!r}")
        for field in entry:
            if field not in allowed:
                fail(field, "no such field (allowed: " + ", ".join(allowed) + ")", repr(entry[field]))
        for field in EVAL_REQUIRED:
            if field not in entry:
                fail(field, "a finite number" if field == "metric_value" else "a non-empty string", "nothing (missing)")
        for field in EVAL_REQUIRED[:-1]:
            if not isinstance(entry[field], str) or not entry[field].strip():
                fail(field, "a non-empty string", repr(entry[field]))
        value = entry["metric_value"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            fail("metric_value", "a finite number", repr(value))
        for field in EVAL_OPTIONAL:
            if entry.get(field) is not None and (not isinstance(entry[field], str) or not entry[field].strip()):
                fail(field, "a non-empty string or null", repr(entry[field]))
        if entry.get("source_name") is not None and entry.get("source_url") is None:
            fail("source_url", "a URL when source_name is given", "nothing (missing)")
        out.append(EvalResult(**entry))
    return out


def _load_eval_results(folder: Path, results) -> list:
    if results is not None:
        return eval_results_from_dicts(results)
    path = folder / EVAL_RESULTS_FILE
    if not path.is_file():
        return []
    return eval_results_from_dicts(_read_json(path), source=str(path))


# =============================================================================================
# Formatting helpers
# =============================================================================================
def _cell(value: Any) -> str:
    """A value as the text of one markdown table cell."""
    if isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, separators=(", ", ": "))
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return (f"{h} h " if h else "") + (f"{m} min " if h or m else "") + f"{s} s"


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _is_hub_id(name) -> bool:
    from .push import is_repo_id

    return is_repo_id(name)


def _input_shapes(config) -> dict:
    """Per modality the per-sample input shape (after the batch axis) and its axis names."""
    t, s = config.num_frames, config.video_spatial_size
    shapes = {"audio": ((t, config.audio_feature_dim), "T, audio_feature_dim"),
              "video": ((t, s, s, config.video_feature_dim), "T, H, W, video_feature_dim"),
              "text": ((t, config.text_feature_dim), "T, text_feature_dim")}
    return {m: shapes[m] for m in config.modalities}


_EXTRACTORS = {"audio": "VGGish-style audio features", "video": "VGG19 pool5-style video maps",
               "text": "BERT token features"}


# =============================================================================================
# The card
# =============================================================================================
def _config_section(folder: Path, config, raw: dict) -> dict:
    num_layers = config.num_layers
    arch = "DCID" if num_layers == 1 else "H-DCID"
    shapes = _input_shapes(config)
    inputs = "; ".join(f"{m} `[B, {', '.join(map(str, shape))}]`" for m, (shape, _) in shapes.items())
    weights = weight_files(folder)
    tensors = {}
    from ..loading import safetensors_header

    for name in weights:
        tensors.update(safetensors_header(folder / name))
    total = sum(math.prod(shape) for _, shape in tensors.values())
    heads = sum(math.prod(shape) for k, (_, shape) in tensors.items() if re.match(r"^(decoders|cpc|club)\.", k))
    weight_text = f"{', '.join(f'`{w}`' for w in weights)}: {_millions(total)} values (parameters and codebook buffers)"
    if heads:
        weight_text += f"; encoder {_millions(total - heads)}, pretraining heads {_millions(heads)}"
    dtype = raw.get("dtype") or raw.get("torch_dtype")
    rows = [
        ("Architecture", f"{arch} ({num_layers} {'layer' if num_layers == 1 else 'layers'})"),
        ("Saved class", ", ".join(f"`{a}`" for a in raw.get("architectures") or []) or "–"),
        ("Modalities", ", ".join(config.modalities) + " (the order the multimodal EMA visits them)"),
        ("Hidden size D", f"{config.hidden_size} (width of the unified space and of every code)"),
        ("Codes per layer", _codes_text(config)),
        ("Time steps T", str(config.num_frames)),
        ("Input features", inputs),
        ("Modality-general encoders", f"{config.num_transformer_layers}-layer transformer, "
                                      f"{config.num_attention_heads} heads, FFN {config.intermediate_size}"),
        ("Unified output", f"`[B, T, {num_layers * config.hidden_size}]` (all layers' codes concatenated)"),
        ("Weights", weight_text),
    ]
    if dtype:
        rows.append(("Weights dtype", f"{dtype} (codebooks are always kept in float32)"))
    return {"arch": arch, "num_layers": num_layers, "config_rows": [(n, v.replace("|", "\\|")) for n, v in rows],
            "has_heads": bool(heads), "shapes": shapes}


def _codes_text(config) -> str:
    """What the quantizer of every layer is and how many codes it has (``config.num_codes``)."""
    n = config.num_codes
    if config.quantizer == "fsq":
        return f"{n} (FSQ: a fixed grid of levels {config.fsq_levels_or_default}, no learnt codebook)"
    if config.quantizer == "fdt":
        return f"{n} (FDT: a learnt bank of {n} tokens × {config.hidden_size} channels)"
    if config.quantizer == "rvq":
        return (f"{n} per stage ({config.num_quantizers} residual stages of multimodal EMA codebooks, "
                f"{n} × {config.hidden_size} each)")
    return f"{n} (a multimodal EMA codebook of {n} codes × {config.hidden_size} channels)"


def _codes_phrase(config) -> str:
    """The card's opening words about the codes of a layer."""
    n, d = config.num_codes, config.hidden_size
    if config.quantizer == "fsq":
        return f"a fixed FSQ grid of {n} codes per layer, projected to {d} channels"
    if config.quantizer == "fdt":
        return f"a bank of {n} learnt tokens × {d} channels per layer"
    if config.quantizer == "rvq":
        return f"{config.num_quantizers} residual codebooks of {n} codes × {d} channels per layer"
    return f"one codebook of {n} codes × {d} channels per layer"


def _toc_section(config) -> dict:
    channels = config.toc_channels
    if not channels:
        return {"toc_rows": [], "toc_total": 0, "toc_settings": ""}
    rows = []
    for k, idx in enumerate(channels):
        shown = ", ".join(map(str, idx[:16])) + (f", … ({len(idx) - 16} more)" if len(idx) > 16 else "")
        rows.append((k + 1, len(idx), shown))
    settings = config.toc_settings or {}
    names = {"num_channels": "Q", "lam": "λ", "normalize": "normalize codes first",
             "top_bottom": "best/worst split", "unbiased_variance": "unbiased variance"}
    text = ", ".join(f"{names.get(k, k)} = {_cell(v)}" for k, v in settings.items()) or "not recorded"
    return {"toc_rows": rows, "toc_total": sum(len(c) for c in channels), "toc_settings": text}


def _options_section(config) -> dict:
    from ..modeling.configuration_hdcid import HDCIDConfig

    defaults = HDCIDConfig.hdcid()
    option_rows = [(name, _cell(getattr(config, name)), _cell(getattr(defaults, name)), meaning)
                   for name, meaning in BEHAVIOUR_OPTIONS.items() if getattr(config, name) != getattr(defaults, name)]
    fields = [p for p in inspect.signature(HDCIDConfig.__init__).parameters
              if p not in ("self", "kwargs", "toc_channels", "toc_settings") and p not in BEHAVIOUR_OPTIONS]
    def cell(name, value):
        if name == "input_normalization" and isinstance(value, dict):  # statistics: summarised, not dumped
            return "per-channel mean / std of " + ", ".join(
                f"{m} ({len(stats.get('mean', []))} channels)" for m, stats in value.items() if isinstance(stats, dict))
        return _cell(value)

    other_rows = [(f, cell(f, getattr(config, f)), cell(f, getattr(defaults, f))) for f in fields
                  if getattr(config, f) != getattr(defaults, f)]
    return {"option_rows": option_rows, "other_rows": other_rows}


def _training_section(info: dict | None, num_layers: int) -> dict:
    if info is None:
        return {"training_note": f"No `{TRAINING_INFO_FILE}` was saved with this model, so its training data "
                                 "and procedure are not recorded here.",
                "data_rows": [], "procedure_rows": [], "loss_rows": []}
    data = _dict(info.get("data"))
    data_rows = []
    dataset = data.get("dataset")
    if isinstance(dataset, str) and dataset:
        link = f"[{dataset}](https://huggingface.co/datasets/{dataset})" if _is_hub_id(dataset) else dataset
        data_rows.append(("Dataset", link))
    elif "dataset" in data:
        data_rows.append(("Dataset", "not a published dataset (local feature shards)"))
    if isinstance(data.get("path"), str) and data["path"] and not _is_hub_id(dataset):  # a Hub id: linked above
        data_rows.append(("Feature shards", f"`{Path(data['path']).name}`"))
    for key, name in (("split", "Split"), ("num_clips", "Clips")):
        if data.get(key) is not None:
            data_rows.append((name, _cell(data[key])))
    if isinstance(data.get("modalities"), list):
        data_rows.append(("Modalities", ", ".join(map(str, data["modalities"]))))
    procedure_rows = []
    for key, name in (("num_processes", "Processes"), ("global_batch_size", "Global batch size"),
                      ("steps", "Optimiser steps"), ("epochs", "Epochs")):
        if _number(info.get(key)) is not None:
            procedure_rows.append((name, _cell(info[key])))
    if _number(info.get("train_time_s")) is not None:
        procedure_rows.append(("Training time", _duration(info["train_time_s"])))
    if isinstance(info.get("hf_hdcid_version"), str):
        procedure_rows.append(("hf-hdcid version", info["hf_hdcid_version"]))
    for key, value in _dict(info.get("pretrain_config")).items():
        if key not in _RUN_LOGISTICS:
            procedure_rows.append((f"`{key}`", _cell(value)))
    metrics = _dict(info.get("final_metrics"))
    from ..modeling.modeling_hdcid import parse_term_name

    def is_loss(key):
        term = parse_term_name(key)
        return key == "loss" or (term.family == "total" and term.modality is None and term.layer is not None
                                 and term.layer <= num_layers)

    loss_rows = [(k, _cell(v)) for k, v in metrics.items() if _number(v) is not None and is_loss(k)]
    note = "" if data_rows or procedure_rows else f"`{TRAINING_INFO_FILE}` records no training data or settings."
    return {"training_note": note, "data_rows": data_rows, "procedure_rows": procedure_rows, "loss_rows": loss_rows}


def _health_section(info: dict | None, config) -> dict:
    from ..modeling.modeling_hdcid import parse_term_name

    metrics = _dict(_dict(info).get("final_metrics"))
    found: dict[int, dict] = {}
    modalities = set()

    for key, value in metrics.items():
        term = parse_term_name(key)
        per_modality = term.family == "perplexity"
        if (term.family in _HEALTH_FAMILIES and term.layer is not None and (term.modality is not None) == per_modality
                and _number(value) is not None and term.layer <= config.num_layers):
            found.setdefault(term.layer, {})[term.family, term.modality] = value
            if per_modality:
                modalities.add(term.modality)
    order = [m for m in config.modalities if m in modalities] + sorted(modalities - set(config.modalities))
    rows = []
    for layer in sorted(found):
        values = found[layer]
        active = values.get(("active_codes", None))
        active = "–" if active is None else f"{active:.4g} / {config.num_codes}"
        equal = values.get(("equal_num", None))
        equal = "–" if equal is None else f"{equal:.4g}"
        perplexities = [values.get(("perplexity", m)) for m in order]
        rows.append((layer, active, equal, ["–" if p is None else f"{p:.4g}" for p in perplexities]))
    return {"health_rows": rows, "health_modalities": order}


def _eval_rows(results: list) -> list:
    rows = []
    for r in results:
        task = r.task_name or r.task_type
        dataset = r.dataset_name + (f" ({r.dataset_config})" if r.dataset_config else "")
        if _is_hub_id(r.dataset_type):
            dataset = f"[{dataset}](https://huggingface.co/datasets/{r.dataset_type})"
        source = f"[{r.source_name}]({r.source_url})" if r.source_name else (r.source_url or "–")
        split, metric = r.dataset_split or "–", r.metric_name or r.metric_type
        text = [v.replace("|", "\\|") for v in (task, dataset, split, metric)]
        rows.append((*text, _cell(r.metric_value), source.replace("|", "\\|")))
    return rows


def _limitations(config, info: dict | None, results: list) -> list[str]:
    inputs = ", ".join(_EXTRACTORS[m] for m in config.modalities)
    lines = [
        f"The inputs are pre-extracted features ({inputs}) with exactly the shapes above; raw audio, frames or "
        "text are not accepted, and features from other extractors land on meaningless codes.",
        "The codes are only as general as the pretraining data: events, domains and modalities absent from it "
        "get no codes of their own. Check the codebook health above before relying on the codes.",
        "The paper reports a trade-off: compared with DCID, H-DCID is slightly worse on cross-modal "
        "classification, which relies on high-level semantics, and better on event localisation, which needs "
        "finer alignment.",
        "TOC is computed from the codebook alone; the number of channels Q and λ are hyper-parameters whose "
        "best values depend on the downstream task.",
        "This is a re-implementation in 🤗 transformers, not the authors' released checkpoint. Where the paper "
        "and the original code disagree, the choice is a configuration option (listed above).",
    ]
    data = _dict(_dict(info).get("data"))
    names = " ".join(str(data.get(k) or "") for k in ("dataset", "path")).lower()
    if "synthetic" in names:
        lines.insert(0, "**Trained on synthetic features**: this model exercises the pipeline and is not meant "
                        "for real-world use.")
    if not results:
        lines.append("No evaluation results are provided, so the quality on downstream tasks is unknown.")
    return lines


def _model_name(folder: Path, repo_id: str | None, arch: str, modalities, folder_name: str | None = None) -> str:
    if repo_id:
        return repo_id.split("/")[-1]
    name = folder_name if folder_name is not None else folder.resolve().name
    return name if name.lower() not in _GENERIC_FOLDER_NAMES else f"{arch.lower()}-{'-'.join(modalities)}"


def render_model_card(model_dir: str | os.PathLike, results: list | None = None, *, repo_id: str | None = None,
                      folder_name: str | None = None):
    """The model card of a saved H-DCID / DCID folder as a :class:`huggingface_hub.ModelCard`.

    Reads ``config.json`` (architecture, modalities, sizes, TOC channels, options that differ from
    ``HDCIDConfig.hdcid()``), the safetensors headers, ``training_info.json`` when present (data,
    procedure, final losses, codebook health) and the figures present. ``results`` (a list of
    :class:`huggingface_hub.EvalResult` field dicts; default: ``eval_results.json`` of the folder when
    present) become a table and the ``model-index`` metadata. ``repo_id`` goes into the usage
    examples (default placeholder ``ORG/NAME``); the card's title is the repo's name, else
    ``folder_name`` (default: the folder's own name; for a folder written under a temporary name).
    Raises ValueError for a bad folder, config or result.
    """
    from huggingface_hub import ModelCard, ModelCardData

    from ..model_cards import HDCID_CARD_TEMPLATE

    from ..loading import check_model_folder

    folder = check_model_dir(model_dir)
    check_model_folder(folder)  # a card describes the weights that are there
    if repo_id is not None:
        from .push import check_repo_id

        check_repo_id(repo_id)
    config, raw = _load_config(folder)
    eval_results = _load_eval_results(folder, results)
    info_path = folder / TRAINING_INFO_FILE
    info = _read_json(info_path) if info_path.is_file() else None
    if info is not None and not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected a JSON object, got {type(info).__name__}")

    cfg = _config_section(folder, config, raw)
    toc = _toc_section(config)
    name = _model_name(folder, repo_id, cfg["arch"], config.modalities, folder_name)
    tags = ["hdcid", "dcid" if config.num_layers == 1 else "h-dcid", "multimodal", "vector-quantization",
            "discrete-representation", "cross-modal-generalization", *config.modalities, "custom_code"]
    if toc["toc_rows"]:
        tags.insert(2, "toc")
    dataset = _dict(_dict(info).get("data")).get("dataset")
    card_data = ModelCardData(
        library_name="transformers", license="mit", pipeline_tag="feature-extraction", tags=tags,
        datasets=[dataset] if _is_hub_id(dataset) else None,
        model_name=name if eval_results else None, eval_results=eval_results or None,
    )
    example = config.modalities[0]
    shape, axes = cfg["shapes"][example]
    context = dict(
        model_name=name, repo_id=repo_id or "ORG/NAME", arch=cfg["arch"],
        arch_long="dual cross-modal information disentanglement" if config.num_layers == 1
        else "hierarchical dual cross-modal information disentanglement",
        num_layers=config.num_layers, modalities=list(config.modalities),
        modalities_text=", ".join(config.modalities), hidden_size=config.hidden_size,
        num_codes=config.num_codes, codes_phrase=_codes_phrase(config), num_frames=config.num_frames,
        active_code_threshold=config.active_code_threshold,
        paper_title=PAPER_TITLE, paper_url=PAPER_URL, paper_authors=", ".join(PAPER_AUTHORS),
        code_url=ORIGINAL_CODE_URL, bibtex=BIBTEX,
        config_rows=cfg["config_rows"], has_heads=cfg["has_heads"],
        inputs_text="; ".join(f"{m} `[B, {', '.join(map(str, s))}]` ({_EXTRACTORS[m]})"
                              for m, (s, _) in cfg["shapes"].items()),
        example_modality=example, example_shape=", ".join(map(str, shape)), example_axes=axes,
        call_kwargs=", ".join(f"{m}=torch.randn(2, {', '.join(map(str, cfg['shapes'][m][0]))})"
                              for m in config.modalities[:2]),
        eval_rows=_eval_rows(eval_results),
        figures=[f for f in FIGURES if (folder / f[0]).is_file()],
        limitations=_limitations(config, info, eval_results),
        **toc, **_options_section(config), **_training_section(info, config.num_layers),
        **_health_section(info, config),
    )
    return ModelCard.from_template(card_data, template_path=str(HDCID_CARD_TEMPLATE), **context)


def write_model_card(model_dir: str | os.PathLike, results: list | None = None, *,
                     repo_id: str | None = None, folder_name: str | None = None) -> Path:
    """Render the card (:func:`render_model_card`) and write it to ``model_dir/README.md``; returns the path."""
    card = render_model_card(model_dir, results, repo_id=repo_id, folder_name=folder_name)
    path = Path(model_dir) / CARD_FILE
    tmp = path.with_name(f".{CARD_FILE}.tmp")
    tmp.write_text(str(card), encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a card
    return path

__all__ = ["render_model_card", "write_model_card", "check_model_dir", "eval_results_from_dicts", "weight_files",
           "paper_vs_original_table",
           "BEHAVIOUR_OPTIONS", "FIGURES", "PAPER_TITLE", "PAPER_AUTHORS", "PAPER_URL", "ORIGINAL_CODE_URL", "BIBTEX",
           "CONFIG_FILE", "CARD_FILE", "TRAINING_INFO_FILE", "EVAL_RESULTS_FILE"]
