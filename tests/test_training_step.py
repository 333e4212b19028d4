"""pretraining_step: one encoder pass, CLUB steps on detached features, one main update."""

import pytest
import torch

from hf_hdcid import HDCIDConfig, HDCIDForPreTraining
from hf_hdcid.training import pretraining_step

from conftest import make_batch


def _setup():
    torch.manual_seed(0)
    cfg = HDCIDConfig.tiny(warm_start_epoch=0)
    model = HDCIDForPreTraining(cfg).train()
    return cfg, model, torch.optim.SGD(model.main_parameters(), lr=0.1), torch.optim.SGD(model.club_parameters(), lr=0.1)


def _club_then_main(ref, ref_main, ref_club, batch, club_features, main_features):
    """The documented step by hand: one CLUB update per item of ``club_features`` (consumed lazily),
    then the main update on ``main_features()``."""
    for feats in club_features:
        ref_club.zero_grad()
        ref.club_loss(feats).backward()
        ref_club.step()
    ref_out = ref.compute_losses(batch, 0, features=main_features())
    ref_main.zero_grad()
    ref_out.loss.backward()
    ref_main.step()
    return ref_out


def test_pretraining_step_equals_the_documented_sequence():
    cfg, model, main_opt, club_opt = _setup()
    batch = make_batch(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    out = pretraining_step(model, batch, 0, main_opt, club_opt, club_steps=3)
    after = {k: v.clone() for k, v in model.state_dict().items()}

    cfg, ref, ref_main, ref_club = _setup()
    torch.manual_seed(1)
    feats = ref.extract_features(batch, 0)
    ref_out = _club_then_main(ref, ref_main, ref_club, batch, [feats] * 3, lambda: feats)
    assert torch.equal(out.loss, ref_out.loss)
    for k, v in ref.state_dict().items():
        assert torch.equal(after[k], v), k
    for key in ("hdcid.layers.0.codebook.embed", "club.0.audio.mu.0.weight", "hdcid.text_encoder.lstm.weight_ih_l0",
                "decoders.0.video.code_projection.weight", "cpc.1.predictors.text.0.weight"):
        assert not torch.equal(after[key], before[key]), key  # codebooks, CLUB and main parameters moved


def test_per_club_step_passes_equal_the_original_schedule():
    """encoder_passes="per_club_step": a fresh train-mode encoder pass (EMA update, dropout) before every
    CLUB step and one more for the main loss, as the original's mi_first_forward / mi_second_forward."""
    cfg, model, main_opt, club_opt = _setup()
    batch = make_batch(cfg)
    torch.manual_seed(1)
    out = pretraining_step(model, batch, 0, main_opt, club_opt, club_steps=2, encoder_passes="per_club_step")

    cfg, ref, ref_main, ref_club = _setup()
    torch.manual_seed(1)

    def fresh_pass():
        with torch.no_grad():
            return ref.extract_features(batch, 0)

    club_features = (fresh_pass() for _ in range(2))  # each encoded right before its CLUB step
    ref_out = _club_then_main(ref, ref_main, ref_club, batch, club_features, lambda: ref.extract_features(batch, 0))
    assert torch.equal(out.loss, ref_out.loss)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    # three codebook updates: the dead-code counters advanced three times (once per pass)
    cfg, once, m2, c2 = _setup()
    pretraining_step(once, batch, 0, m2, c2, club_steps=2)
    assert int(once.hdcid.layers[0].codebook.unused_steps.max()) == 0  # -1 -> 0 for a code never used
    assert int(model.hdcid.layers[0].codebook.unused_steps.max()) == 2  # -1 -> 0 -> 1 -> 2


def test_pretraining_step_rejects_bad_encoder_passes():
    cfg, model, main_opt, club_opt = _setup()
    with pytest.raises(ValueError, match=r"encoder_passes: expected one of \('once', 'per_club_step'\), got 'twice'"):
        pretraining_step(model, make_batch(cfg), 0, main_opt, club_opt, encoder_passes="twice")


def test_pretraining_step_rejects_negative_club_steps():
    cfg, model, main_opt, club_opt = _setup()
    with pytest.raises(ValueError, match="club_steps: expected an int >= 0, got -1"):
        pretraining_step(model, make_batch(cfg), 0, main_opt, club_opt, club_steps=-1)


def test_after_main_order_steps_the_main_model_then_the_club_networks_on_the_same_features():
    """club_update_order="after_main": one forward (encoder pass, codebook update, eq. 14), the main
    update, then the CLUB steps on that forward's detached features."""
    cfg, model, main_opt, club_opt = _setup()
    batch = make_batch(cfg)
    torch.manual_seed(1)
    out = pretraining_step(model, batch, 0, main_opt, club_opt, club_steps=2, club_update_order="after_main")

    cfg, ref, ref_main, ref_club = _setup()
    torch.manual_seed(1)
    ref_out = ref(**batch, epoch=0)
    ref_main.zero_grad()
    ref_out.loss.backward()
    ref_main.step()
    for _ in range(2):
        ref_club.zero_grad()
        ref.club_loss(ref_out.features).backward()
        ref_club.step()
    assert torch.equal(out.loss, ref_out.loss)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    # and it is another step than the original order's (the MI term saw CLUB nets not yet updated)
    cfg, before, m2, c2 = _setup()
    torch.manual_seed(1)
    other = pretraining_step(before, batch, 0, m2, c2, club_steps=2)
    assert not torch.equal(other.loss, out.loss)


def test_per_club_step_passes_need_the_original_order():
    cfg, model, main_opt, club_opt = _setup()
    with pytest.raises(ValueError, match="encoder_passes: 'per_club_step' exists only with club_update_order='before_main'"):
        pretraining_step(model, make_batch(cfg), 0, main_opt, club_opt, encoder_passes="per_club_step",
                         club_update_order="after_main")


def test_club_objective_holds_only_the_club_parameters_and_runs_in_float32():
    from hf_hdcid.training.step import CLUBObjective, club_parameter_names

    cfg, model, _, _ = _setup()
    objective = CLUBObjective(model)
    assert {id(p) for p in objective.parameters()} == {id(p) for p in model.club_parameters()}
    names = dict(model.named_parameters())
    assert sorted(club_parameter_names(model)) == sorted(n for n in names if n.startswith("club."))
    feats = model.extract_features(make_batch(cfg), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = objective(feats)
    assert loss.dtype == torch.float32
    assert torch.allclose(loss, model.club_loss(feats))
