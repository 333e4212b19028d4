"""Conversion of the authors' original DCID / H-DCID ``.pt`` checkpoints (hf_hdcid.convert_original).

Checkpoints are built in the original layout: a small model's weights written under the original key
names (the inverse of the mapping table), the original's unused parameters added, saved with
torch.save as nested dicts of float64 tensors. The key names themselves are checked against the
reference dump of the original modules at the paper sizes.
"""

import ast
import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import hf_hdcid.hub
from conftest import make_batch
from hf_hdcid import HDCIDConfig, HDCIDForPreTraining, HDCIDModel
from hf_hdcid.cli import main
from transformers import AutoModel
from hf_hdcid.convert_original import (
    convert_original_checkpoint,
    detect_variant,
    model_key,
    original_key,
    original_state_dicts,
    unused_reason,
)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "original-state-dicts.txt"

# small dimensions; what no tensor shape holds (4 heads, T=10, 7x7 maps) stays at the original's values
SMALL = dict(hidden_size=16, codebook_size=24, audio_feature_dim=8, video_feature_dim=16, text_feature_dim=20,
             text_lstm_hidden_size=8, intermediate_size=32, video_conv_channels=[16, 24], video_feedforward_dim=16,
             audio_specific_dim=12, text_specific_dim=12, club_hidden_size=16)


def small_model(variant: str, seed: int = 0) -> HDCIDForPreTraining:
    """A float64 model with random weights and a used-looking codebook (codes, counts, unused steps)."""
    torch.manual_seed(seed)
    preset = HDCIDConfig.original_hdcid if variant == "hdcid" else HDCIDConfig.original_dcid
    model = HDCIDForPreTraining(preset(**SMALL)).double().eval()
    with torch.no_grad():
        for layer in model.hdcid.layers:
            book = layer.codebook
            book.embed.normal_()
            book.ema_count.uniform_(0.1, 5.0)
            book.ema_weight.copy_(book.embed * book.ema_count[:, None])
            book.unused_steps.random_(0, 300)
    return model


def add_unused(entries: dict, variant: str) -> dict:
    """The original's unused parameters: transformer template layers (shaped like encoder.layers.0),
    the dead spatial-attention Linears, and (DCID decoder) the 141-class semantic heads."""
    enc = entries["Encoder_parameters"]
    g = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    for module in ("video_self_att", "text_self_att", "audio_self_att") + (
            ("video_self_att_2", "text_self_att_2", "audio_self_att_2") if variant == "hdcid" else ()):
        for key in [k for k in enc if k.startswith(f"{module}.encoder.layers.0.")]:
            enc[key.replace(".encoder.layers.0.", ".encoder_layer.")] = rand(*enc[key].shape)
    c = SMALL["video_feature_dim"]
    for name, shape in (("affine_video_ave.weight", (c // 2, c)), ("affine_video_ave.bias", (c // 2,)),
                        ("affine_video_self.weight", (c // 2, c)), ("affine_video_self.bias", (c // 2,)),
                        ("ave_v_att.weight", (1, c // 2)), ("ave_v_att.bias", (1,))):
        enc[f"video_semantic_encoder.{name}"] = rand(*shape)
    if variant == "dcid" and "Decoder_parameters" in entries:
        d = SMALL["hidden_size"]
        for m in ("video", "text", "audio"):
            for name, shape in (("linear.weight", (d, d)), ("linear.bias", (d,)),
                                ("event_classifier.weight", (141, d)), ("event_classifier.bias", (141,))):
                entries["Decoder_parameters"][f"{m}_semantic_decoder.{name}"] = rand(*shape)
    return entries


def original_checkpoint(model: HDCIDForPreTraining, variant: str) -> dict:
    """The checkpoint dict the original code would save for these weights. H-DCID (pretrain_ml.py):
    encoder, text BiLSTM, epoch. DCID (CMG): also decoder, CPC, CLUB nets, optimiser states, total_step."""
    entries = add_unused(original_state_dicts(model), variant)
    keep = ["Encoder_parameters", "Text_ar_lstm_parameters"]
    if variant == "dcid":
        keep += ["CPC_parameters", "Video_mi_net_parameters", "Text_mi_net_parameters", "Audio_mi_net_parameters",
                 "Decoder_parameters"]
    ckpt = {name: OrderedDict(entries[name]) for name in keep}
    ckpt["epoch"] = 3
    if variant == "dcid":
        weight = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([weight], lr=4e-4)
        weight.sum().backward()
        opt.step()
        for name in ("optimizer", "optimizer_video_mi_net", "optimizer_text_mi_net", "optimizer_audio_mi_net"):
            ckpt[name] = opt.state_dict()
        ckpt["total_step"] = 1234
    return ckpt


def save(ckpt: dict, path: Path) -> Path:
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def hdcid_source():
    return small_model("hdcid")


@pytest.fixture(scope="module")
def dcid_source():
    return small_model("dcid", seed=1)


@pytest.fixture
def hdcid_file(tmp_path, hdcid_source):
    return save(original_checkpoint(hdcid_source, "hdcid"), tmp_path / "warmstart3-MLVQ-AVT-deep2-model-3.pt")


@pytest.fixture
def dcid_file(tmp_path, dcid_source):
    return save(original_checkpoint(dcid_source, "dcid"), tmp_path / "nips2023_AVT_vgg40k_size400.pt")


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module, prefix: str = ""):
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(prefix)]
    assert keys and all(sb[k].dtype == sa[k].dtype and torch.equal(sb[k], sa[k]) for k in keys)


# ------------------------------------------------------------------------------------------------
# The mapping table against the original's key names
# ------------------------------------------------------------------------------------------------
def reference_sections() -> dict:
    """{section title prefix: {key: shape}} from the reference dump of the original modules."""
    sections, current = {}, None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = sections.setdefault(line[4:].split(" ")[0], {})
        elif line.strip() and current is not None:
            key, shape, _ = line.split("\t")
            current[key] = ast.literal_eval(shape)
    return sections


@pytest.mark.skipif(not REFERENCE.is_file(), reason="needs ../shared/reference/original-state-dicts.txt")
@pytest.mark.parametrize("variant", ["hdcid", "dcid"])
def test_every_original_key_of_the_paper_model_is_mapped_or_reported_unused(variant):
    ref = reference_sections()
    encoder = ref["AVT_MLVQVAE_Encoder" if variant == "hdcid" else "AVT_VQVAE_Encoder"]
    decoder = ref["AVT_MLVQVAE_Decoder" if variant == "hdcid" else "AVT_VQVAE_Decoder"]
    expected = {"Encoder_parameters": encoder, "Decoder_parameters": decoder, "Text_ar_lstm_parameters":
                ref["Text_ar_lstm:"], "CPC_parameters": ref["Cross_CPC_AVT:"]}
    for m in ("Video", "Text", "Audio"):
        expected[f"{m}_mi_net_parameters"] = ref[f"{m}_mi_net"]
    preset = HDCIDConfig.original_hdcid if variant == "hdcid" else HDCIDConfig.original_dcid
    with torch.device("meta"):
        model = HDCIDForPreTraining(preset()).double()
    produced = original_state_dicts(model)
    for entry, keys in expected.items():
        used = {k: s for k, s in keys.items() if unused_reason(entry, k) is None}
        assert {k: tuple(t.shape) for k, t in produced[entry].items()} == used, entry
    unused = sorted(k for k in encoder if unused_reason("Encoder_parameters", k))
    assert len(unused) == (6 if variant == "hdcid" else 3) * 12 + 6
    assert len(encoder) == (262 if variant == "hdcid" else 142)
    if variant == "dcid":
        assert sorted(k for k in decoder if unused_reason("Decoder_parameters", k)) == sorted(
            k for k in decoder if "_semantic_decoder." in k)


def test_mapping_table_examples_read_both_ways():
    assert model_key("Encoder_parameters", "audio_self_att_2.encoder.layers.1.norm2.bias") == \
        "hdcid.layers.1.general.audio.transformer.layers.1.norm2.bias"
    assert model_key("Encoder_parameters", "Video_encoder.conv_stack.5.stack.0.res_block.3.weight") == \
        "hdcid.layers.0.specific.video.convs.5.layers.0.2.weight"
    assert model_key("Encoder_parameters", "Cross_quantizer.unactivated_count") == "hdcid.layers.{k}.codebook.unused_steps"
    assert model_key("Video_mi_net_parameters", "p_logvar.6.bias") == "club.0.video.logvar.6.bias"
    assert model_key("Text_ar_lstm_parameters", "weight_hh_l1_reverse") == "hdcid.text_encoder.lstm.weight_hh_l1_reverse"
    assert model_key("Encoder_parameters", "video_self_att.encoder_layer.linear1.weight") is None
    assert original_key("decoders.1.video.code_projection.weight") == (
        "Decoder_parameters", "Video_decoder_2.simple_linear.weight")
    assert original_key("cpc.0.predictors.text.0.bias") == ("CPC_parameters", "text_predictors.0.bias")
    assert original_key("hdcid.layers.1.codebook.ema_weight") == ("Encoder_parameters", "Cross_quantizer.ema_weight")


# ------------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------------
def test_hdcid_checkpoint_converts_exactly_and_reports_what_it_lacks(hdcid_file, hdcid_source):
    model, report = convert_original_checkpoint(hdcid_file, return_report=True)
    assert report.variant == "hdcid" and report.epoch == 3 and not model.training
    assert model.config.num_layers == 2 and model.config.use_cmcm is False
    assert model.config.video_spatial_pooling == "sum" and model.config.dead_code_reset == "stale_ema"
    assert model.dtype == torch.float64
    assert_same_state(hdcid_source, model, prefix="hdcid.")
    assert model.hdcid.layers[1].codebook.unused_steps.dtype == torch.long
    assert report.converted == {"Encoder_parameters": 184, "Text_ar_lstm_parameters": 16}
    assert len(report.dropped["Encoder_parameters"]) == 6 * 12 + 6
    assert report.initialised == ["club.0.audio", "club.0.text", "club.0.video", "club.1.audio", "club.1.text",
                                  "club.1.video", "cpc.0", "cpc.1", "decoders.0", "decoders.1"]
    audio = make_batch(model.config, 2, dtype=torch.float64)["audio"]
    ours, ref = model.hdcid.encode("audio", audio), hdcid_source.hdcid.encode("audio", audio)
    for k in range(2):
        assert torch.equal(ours.indices[k], ref.indices[k]) and torch.equal(ours.quantized[k], ref.quantized[k])


def test_dcid_checkpoint_converts_its_heads_and_ignores_optimiser_states(dcid_file, dcid_source):
    model, report = convert_original_checkpoint(dcid_file, "dcid", return_report=True)
    assert report.variant == "dcid" and model.config.num_layers == 1 and model.config.use_cmcm is True
    assert_same_state(dcid_source, model)
    assert report.initialised == []
    assert report.ignored_entries == ["optimizer", "optimizer_audio_mi_net", "optimizer_text_mi_net",
                                      "optimizer_video_mi_net"]
    assert (report.epoch, report.total_step) == (3, 1234)
    assert sorted(report.dropped) == ["Decoder_parameters", "Encoder_parameters"]
    assert len(report.dropped["Decoder_parameters"]) == 12 and len(report.dropped["Encoder_parameters"]) == 42
    assert report.converted["Decoder_parameters"] == 18 and report.converted["CPC_parameters"] == 30
    assert "dead spatial attention" in report.summary() and "optimizer" in report.summary()


def test_float32_conversion_keeps_codes_of_the_float64_model(hdcid_file, hdcid_source):
    model = convert_original_checkpoint(hdcid_file, dtype=torch.float32)
    assert model.dtype == torch.float32 and model.hdcid.layers[0].codebook.embed.dtype == torch.float32
    batch = make_batch(model.config, 4, seed=3, dtype=torch.float64)
    for m, x in batch.items():
        ours, ref = model.hdcid.encode(m, x.float()), hdcid_source.hdcid.encode(m, x)
        for k in range(2):
            assert torch.equal(ours.indices[k], ref.indices[k]), (m, k)
            torch.testing.assert_close(ours.semantic[k].double(), ref.semantic[k], atol=1e-4, rtol=1e-4)


def test_variant_is_detected_and_a_wrong_variant_is_an_error(hdcid_file, dcid_file):
    assert detect_variant(torch.load(hdcid_file, weights_only=True)) == "hdcid"
    assert detect_variant(torch.load(dcid_file, weights_only=True)) == "dcid"
    with pytest.raises(ValueError, match=r"variant='dcid' but the checkpoint is H-DCID .*\(2, 24, 16\)"):
        convert_original_checkpoint(hdcid_file, "dcid")
    with pytest.raises(ValueError, match=r"variant='hdcid' but the checkpoint is DCID .*\(24, 16\)"):
        convert_original_checkpoint(dcid_file, "hdcid")
    with pytest.raises(ValueError, match="variant: expected None, 'dcid' or 'hdcid', got 'DCID'"):
        convert_original_checkpoint(dcid_file, "DCID")


def test_missing_keys_are_an_error_that_lists_them(tmp_path, hdcid_source):
    ckpt = original_checkpoint(hdcid_source, "hdcid")
    del ckpt["Encoder_parameters"]["text_self_att_2.encoder.layers.1.linear2.bias"]
    del ckpt["Text_ar_lstm_parameters"]["bias_hh_l1_reverse"]
    with pytest.raises(ValueError) as err:
        convert_original_checkpoint(save(ckpt, tmp_path / "m.pt"))
    assert str(err.value) == ("missing keys in the checkpoint (the hdcid model needs them): "
                              "Encoder_parameters/text_self_att_2.encoder.layers.1.linear2.bias, "
                              "Text_ar_lstm_parameters/bias_hh_l1_reverse")
    del ckpt["Text_ar_lstm_parameters"]
    with pytest.raises(ValueError, match=r"missing checkpoint entries \['Text_ar_lstm_parameters'\]"):
        convert_original_checkpoint(save(ckpt, tmp_path / "m.pt"))


def test_missing_codebook_buffer_names_the_layer(tmp_path, dcid_source):
    ckpt = original_checkpoint(dcid_source, "dcid")
    del ckpt["Encoder_parameters"]["Cross_quantizer.ema_weight"]
    with pytest.raises(ValueError, match=r"\(the dcid model needs them\): Encoder_parameters/Cross_quantizer.ema_weight$"):
        convert_original_checkpoint(save(ckpt, tmp_path / "m.pt"))


def test_unexpected_keys_and_entries_are_an_error_that_lists_them(tmp_path, dcid_source):
    ckpt = original_checkpoint(dcid_source, "dcid")
    ckpt["Encoder_parameters"]["Audio_encoder.audio_linear.scale"] = torch.ones(1, dtype=torch.float64)
    ckpt["Encoder_parameters"]["Fusion.weight"] = torch.ones(1, dtype=torch.float64)
    ckpt["CPC_parameters"]["video_predictors.0.scale"] = torch.ones(1, dtype=torch.float64)
    with pytest.raises(ValueError) as err:
        convert_original_checkpoint(save(ckpt, tmp_path / "u.pt"))
    assert str(err.value) == ("unexpected keys in the checkpoint (no place in the dcid model): "
                              "CPC_parameters/video_predictors.0.scale, Encoder_parameters/Audio_encoder.audio_linear.scale, "
                              "Encoder_parameters/Fusion.weight")
    ckpt = original_checkpoint(dcid_source, "dcid")
    ckpt["CPC_2_parameters"] = OrderedDict(ckpt["CPC_parameters"])  # a layer-2 CPC: no place in DCID
    ckpt["scheduler"] = {"last_epoch": 3}
    with pytest.raises(ValueError, match=r"unexpected checkpoint entries \['scheduler'\]"):
        convert_original_checkpoint(save(ckpt, tmp_path / "u.pt"))
    del ckpt["scheduler"]
    with pytest.raises(ValueError, match=r"^unexpected keys .*: CPC_2_parameters/audio_ar_lstm.bias_hh_l0, "):
        convert_original_checkpoint(save(ckpt, tmp_path / "u.pt"))


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path, hdcid_source):
    ckpt = original_checkpoint(hdcid_source, "hdcid")
    ckpt["Encoder_parameters"]["video_self_att.encoder.layers.1.linear2.weight"] = torch.zeros(16, 31, dtype=torch.float64)
    with pytest.raises(ValueError) as err:
        convert_original_checkpoint(save(ckpt, tmp_path / "s.pt"))
    assert str(err.value) == ("shape mismatch: Encoder_parameters/video_self_att.encoder.layers.1.linear2.weight -> "
                              "hdcid.layers.0.general.video.transformer.layers.1.linear2.weight: "
                              "checkpoint (16, 31) vs model (16, 32)")
    ckpt = original_checkpoint(hdcid_source, "hdcid")
    ckpt["Encoder_parameters"]["Cross_quantizer.ema_count"] = torch.ones(2, 23, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Cross_quantizer.ema_count\[1\] -> hdcid.layers.1.codebook.ema_count: "
                                         r"checkpoint \(23,\) vs model \(24,\)"):
        convert_original_checkpoint(save(ckpt, tmp_path / "s.pt"))


def test_non_integral_unactivated_counts_are_an_error(tmp_path, dcid_source):
    ckpt = original_checkpoint(dcid_source, "dcid")
    ckpt["Encoder_parameters"]["Cross_quantizer.unactivated_count"][3] = 2.5
    with pytest.raises(ValueError, match="Cross_quantizer.unactivated_count must hold whole numbers"):
        convert_original_checkpoint(save(ckpt, tmp_path / "c.pt"))


EXECUTED = []


def _record(tag):
    EXECUTED.append(tag)
    return tag


class NeedsPickle:
    def __reduce__(self):
        return (_record, ("code ran",))


def test_a_checkpoint_that_needs_pickle_code_is_refused_without_running_it(tmp_path, hdcid_source):
    ckpt = original_checkpoint(hdcid_source, "hdcid")
    ckpt["args"] = NeedsPickle()
    path = save(ckpt, tmp_path / "p.pt")
    with pytest.raises(ValueError, match=r"p\.pt: refusing to load: torch.load\(weights_only=True\) cannot read it without running "
                       r"arbitrary pickle code \(Unsupported global: GLOBAL test_convert_original._record"):
        convert_original_checkpoint(path)
    assert EXECUTED == []
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"Encoder_parameters": {}}, protocol=2))
    with pytest.raises(ValueError, match=r"plain.pkl: expected a torch.save checkpoint, could not read it \(RuntimeError: Invalid magic number"):
        convert_original_checkpoint(tmp_path / "plain.pkl")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage.pt: expected a torch.save checkpoint \(zip archive or pickle\), got a file starting with b'no'"):
        convert_original_checkpoint(tmp_path / "garbage.pt")
    with pytest.raises(FileNotFoundError):
        convert_original_checkpoint(tmp_path / "absent.pt")


# ------------------------------------------------------------------------------------------------
# Saving, loading and the command line
# ------------------------------------------------------------------------------------------------
def test_converted_float64_model_round_trips_bit_identically(tmp_path, hdcid_file):
    out = tmp_path / "converted"
    assert main(["convert-original", str(hdcid_file), str(out)]) == 0
    model = convert_original_checkpoint(hdcid_file)
    loaded = HDCIDForPreTraining.from_pretrained(out)
    assert loaded.dtype == torch.float64
    assert_same_state(model, loaded)
    assert loaded.config.video_spatial_pooling == "sum" and loaded.config.num_layers == 2
    encoder = AutoModel.from_pretrained(out)
    assert isinstance(encoder, HDCIDModel)
    assert_same_state(model.hdcid, encoder)
    record = json.loads((out / "conversion_report.json").read_text())
    assert record["variant"] == "hdcid" and record["saved"] == "HDCIDForPreTraining"
    assert "decoders.0" in record["initialised"]


def test_cli_encoder_only_float32_and_errors(tmp_path, dcid_file, capsys):
    out = tmp_path / "enc"
    assert main(["convert-original", str(dcid_file), str(out), "--dtype", "float32", "--encoder-only"]) == 0
    assert "DCID checkpoint, epoch 3; model dtype float32" in capsys.readouterr().out
    encoder = HDCIDModel.from_pretrained(out)
    assert encoder.dtype == torch.float32 and encoder.config.num_layers == 1
    assert not any(k.startswith(("decoders", "cpc", "club")) for k in encoder.state_dict())
    assert main(["convert-original", str(dcid_file), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-hdcid convert-original: error: ") and "--overwrite" in err and err.count("\n") == 1
    assert main(["convert-original", str(dcid_file), str(tmp_path / "x"), "--variant", "hdcid"]) == 2
    assert "variant='hdcid' but the checkpoint is DCID" in capsys.readouterr().err


def test_cli_push_to_hub_pushes_the_written_folder(tmp_path, dcid_file, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(hf_hdcid.hub, "push", lambda folder, repo: calls.append((Path(folder), repo)) or "commit-url")
    out = tmp_path / "pushed"
    assert main(["convert-original", str(dcid_file), str(out), "--push-to-hub", "me/dcid-original"]) == 0
    assert calls == [(out, "me/dcid-original")] and (out / "config.json").is_file()
    assert "pushed" in capsys.readouterr().out
    assert main(["convert-original", str(dcid_file), str(tmp_path / "bad"), "--push-to-hub", "not a repo"]) == 2
    assert not (tmp_path / "bad").exists()  # the repo id is checked before converting
