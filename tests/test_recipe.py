"""The published PTB recipe's parts (He et al. 2019, Li et al. 2019): uniform initialisation, and the learning rate
halved at a plateau with the best weights reloaded, gated by epoch and capped, resuming exactly across a halving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL, read_metrics, tiny_model, untimed_metrics

import textvae.training.limits
import textvae.training.trainer
from textvae.training.collapse import fresh_decoder_state
from textvae.config import load_config
from textvae.errors import TextVAEError
from textvae.modeling import TextVAEConfig
from textvae.config import resumed_config
from textvae.training import train


def tiny_settings(*extra: str):
    overrides = [value for value in TINY_MODEL if value != "--set"]
    return load_config(None, [*overrides, "train.batch_size=32", "train.progress_bar=false", "train.precision=fp32",
                              *extra])


def scripted_validations(losses: dict[int, float], seen: dict[int, dict] | None = None):
    """evaluate_split's stand-in: the validation loss scripted for each step; `seen` collects the weights each
    validation saw, by step."""
    def evaluate(model, split, batch_size, seed=0, dtype=None):
        step = evaluate.step
        if seen is not None:
            seen[step] = {name: value.clone() for name, value in model.state_dict().items()}
        loss = losses[step]
        return {"neg_elbo": loss, "rec": loss - 1.0, "kl": 1.0, "ppl_bound": 10.0, "mi": 0.5, "au": 1}
    evaluate.step = 0
    return evaluate


@pytest.fixture
def clocked(monkeypatch):
    """Patch in scripted validations whose step is read from the trainer's own checkpoint writes."""
    def install(losses, seen=None, checkpoints=None):
        fake = scripted_validations(losses, seen)
        real_save = textvae.training.trainer.save_checkpoint

        def save(out_dir, model, optimizer, scheduler, state, *args):
            real_save(out_dir, model, optimizer, scheduler, state, *args)
            if checkpoints is not None:
                checkpoints[state.step] = ({name: value.clone() for name, value in model.state_dict().items()},
                                           optimizer.state_dict()["state"], optimizer.param_groups[0]["lr"])

        def evaluate(model, split, batch_size, seed=0, dtype=None):
            fake.step = install.step()
            return fake(model, split, batch_size, seed, dtype)

        monkeypatch.setattr(textvae.training.trainer, "evaluate_split", evaluate)
        monkeypatch.setattr(textvae.training.trainer, "save_checkpoint", save)
    return install


def valid_steps(run: Path) -> list[int]:
    return [line["step"] for line in read_metrics(run) if line["split"] == "valid"]


def lr_by_step(run: Path) -> dict[int, float]:
    return {line["step"]: line["lr"] for line in read_metrics(run) if line["split"] == "train"}


HALVING = ["optimizer=sgd", "lr=0.5", "momentum=0.9", "eval_every=2", "log_every=1", "lr_decay_patience=1",
           "lr_decay_reload_best=true", "lr_decay_max=2", "max_steps=40"]
# best at 4; 6 and 8 are worse (the 2nd: halve, back to step 4's weights); 10 beats the loss that triggered it;
# 12 and 14 are worse again: the second halving, which is the cap, ends training at step 14
LOSSES = {2: 5.0, 4: 4.0, 6: 6.0, 8: 7.0, 10: 6.5, 12: 8.0, 14: 9.0}


def step_counter(run: Path):
    """The trainer's step at a validation: the train lines logged so far (log_every = 1)."""
    return lambda: len([line for line in read_metrics(run) if line["split"] == "train"]) if (run / "metrics.jsonl").exists() else 0


def test_a_halving_reloads_the_best_weights_restarts_the_optimizer_and_the_cap_ends_training(tmp_path, clocked):
    run, seen, checkpoints = tmp_path / "run", {}, {}
    clocked(LOSSES, seen, checkpoints)
    clocked.step = step_counter(run)
    summary = train(tiny_settings(*[f"train.{key}" for key in HALVING]), run)
    assert valid_steps(run) == [2, 4, 6, 8, 10, 12, 14] and summary["steps"] == 14
    lrs = lr_by_step(run)
    assert lrs[8] == 0.5 and lrs[9] == 0.25 and lrs[14] == 0.25  # halved once at step 8; the 2nd halving ends it
    after_halving, _, lr = checkpoints[8]
    assert lr == 0.25
    for name, value in seen[4].items():  # the checkpoint after the halving holds the best (step 4) weights
        assert torch.equal(after_halving[name], value), name
    assert any(not torch.equal(seen[8][name], value) for name, value in seen[4].items())
    assert checkpoints[8][1] == {}  # momentum buffers dropped, as a new optimizer has none
    assert checkpoints[6][1] != {}  # (without a halving they are kept)
    assert checkpoints[14][2] == 0.125


def test_without_reload_a_decay_keeps_the_current_weights(tmp_path, clocked):
    run, seen, checkpoints = tmp_path / "run", {}, {}
    clocked(LOSSES, seen, checkpoints)
    clocked.step = step_counter(run)
    train(tiny_settings(*[f"train.{key}" for key in HALVING if "reload" not in key]), run)
    assert all(torch.equal(checkpoints[8][0][name], value) for name, value in seen[8].items())
    assert checkpoints[8][2] == 0.25


def test_no_decay_before_lr_decay_from_epoch_but_the_plateau_counts_on(tmp_path, clocked):
    """One epoch is one step here (32 sentences, batch 32): worse at every validation after the first, the LR may
    first halve at the validation after epoch 4, when the plateau is already past its patience."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    words = "the cat sat on a mat while dogs ran far away".split()
    lines = [" ".join(words[i % 7: i % 7 + 4]) for i in range(32)]
    for split in ("train", "valid"):
        (corpus / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    clocked({step: 5.0 + step for step in range(1, 9)})
    clocked.step = step_counter(run)
    train(tiny_settings(f"data.source={corpus}", "train.optimizer=sgd", "train.lr=0.5", "train.log_every=1",
                        "train.lr_decay_patience=1", "train.lr_decay_from_epoch=4", "train.max_epochs=6"), run)
    lrs = lr_by_step(run)
    assert [lrs[step] for step in range(1, 7)] == [0.5, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_resume_is_exact_across_a_halving_and_reload(tmp_path, clocked):
    settings = [f"train.{key}" for key in HALVING] + ["train.word_dropout=0.2"]
    clocked(LOSSES)
    clocked.step = step_counter(tmp_path / "straight")
    train(tiny_settings(*settings), tmp_path / "straight")
    interrupted = tmp_path / "interrupted"
    clocked.step = step_counter(interrupted)
    train(tiny_settings(*[s for s in settings if "max_steps" not in s], "train.max_steps=8"), interrupted)
    assert valid_steps(interrupted)[-1] == 8  # stopped right at the halving's validation
    train(resumed_config(interrupted, ["train.max_steps=40"]), interrupted, resume=True)
    assert untimed_metrics(interrupted) == untimed_metrics(tmp_path / "straight")
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    continued = torch.load(interrupted / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(straight[name], continued[name]) for name in straight)


def test_uniform_initialisation_draws_weights_and_embeddings_from_their_ranges():
    model = tiny_model(weight_init_range=0.01, embedding_init_range=0.1)
    embeddings = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Embedding)}
    for name, parameter in model.named_parameters():
        limit = 0.1 if name.rsplit(".", 1)[0] in embeddings else 0.01
        assert parameter.abs().max() <= limit, name
        assert parameter.abs().max() > limit / 2, name  # drawn from the range, not left small by chance
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            assert not module.weight[module.padding_idx].any()
    fresh = fresh_decoder_state(model, seed=3)  # the decoder reset of Li et al. draws from the same ranges
    assert max(value.abs().max() for name, value in fresh.items() if "embedding" not in name) <= 0.01
    default = tiny_model()
    assert max(parameter.abs().max() for parameter in default.parameters()) > 0.1  # 0 keeps PyTorch's defaults


def test_init_ranges_are_checked():
    with pytest.raises(TextVAEError, match="model.weight_init_range"):
        TextVAEConfig(weight_init_range=-0.1)
    with pytest.raises(TextVAEError, match="model.embedding_init_range"):
        TextVAEConfig(embedding_init_range="wide")


# ---- Li et al. 2019's two runs: an autoencoder, then a VAE from its encoder with a fresh decoder ----------

def test_an_autoencoder_run_is_judged_by_its_reconstruction_loss(tmp_path, monkeypatch):
    """With kl_max_weight 0 (beta = 0) the best model and the LR plateau follow rec, not rec + KL."""
    scores = iter([(40.0, 10.0), (30.0, 30.0), (20.0, 50.0)])  # rec falls while the −ELBO rises

    def evaluate(model, split, batch_size, seed=0, dtype=None):
        rec, kl = next(scores)
        return {"neg_elbo": rec + kl, "rec": rec, "kl": kl, "ppl_bound": 10.0, "mi": 0.5, "au": 1}

    monkeypatch.setattr(textvae.training.trainer, "evaluate_split", evaluate)
    summary = train(tiny_settings("train.kl_schedule=constant", "train.kl_max_weight=0", "train.max_steps=6",
                                  "train.eval_every=2"), tmp_path / "ae")
    assert summary["best_valid"]["step"] == 6
    judged_loss = textvae.training.limits.judged_loss
    validation = {"loss": 80.0, "rec": 30.0, "kl": 50.0}
    assert judged_loss(validation, tiny_settings("train.kl_max_weight=0").train) == 30.0
    assert judged_loss(validation, tiny_settings("train.kl_max_weight=0.5").train) == 55.0
    assert judged_loss(validation, tiny_settings().train) == 80.0


def test_a_run_starts_from_another_runs_weights_and_tokenizer_and_can_reset_the_decoder(tmp_path):
    source = tmp_path / "ae"
    train(tiny_settings("train.kl_schedule=constant", "train.kl_max_weight=0", "train.max_steps=4"), source)
    from textvae.modeling import TextVAE

    pretrained = TextVAE.from_pretrained(source).state_dict()
    kept = tmp_path / "kept"
    train(tiny_settings(f"train.init_from={source}", "train.max_steps=1", "train.optimizer=sgd", "train.lr=1e-9"), kept)
    start = TextVAE.from_pretrained(kept).state_dict()  # one step at a negligible LR: the weights it started from
    assert all(torch.allclose(start[name], value, atol=1e-6) for name, value in pretrained.items())
    assert (kept / "tokenizer.json").read_text() == (source / "tokenizer.json").read_text()

    reset = tmp_path / "reset"
    train(tiny_settings(f"train.init_from={source}", "train.reset_decoder=true", "train.max_steps=1",
                        "train.optimizer=sgd", "train.lr=1e-9"), reset)
    after = TextVAE.from_pretrained(reset).state_dict()
    encoder = [name for name in pretrained if name.startswith(("encoder.", "posterior."))]
    decoder = [name for name in pretrained if name.startswith("decoder.")]
    assert encoder and decoder
    assert all(torch.allclose(after[name], pretrained[name], atol=1e-6) for name in encoder)
    assert all(not torch.allclose(after[name], pretrained[name], atol=1e-3) for name in decoder
               if pretrained[name].numel() > 1 and pretrained[name].any())


def test_init_from_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(TextVAEError, match="train.reset_decoder: .*train.init_from"):
        train(tiny_settings("train.reset_decoder=true", "train.max_steps=1"), tmp_path / "a")
    with pytest.raises(TextVAEError, match="train.init_from: .* is not a textvae run dir"):
        train(tiny_settings(f"train.init_from={tmp_path / 'nothing'}", "train.max_steps=1"), tmp_path / "b")
    source = tmp_path / "small"
    train(tiny_settings("train.max_steps=1"), source)
    with pytest.raises(TextVAEError, match="train.init_from: the weights of .* do not fit"):
        train(tiny_settings(f"train.init_from={source}", "model.latent_size=5", "train.max_steps=1"), tmp_path / "c")


def test_a_vae_decoder_starts_from_a_language_models_decoder(tmp_path):
    """train.decoder_from copies an LM's decoder into the VAE's: shared weights equal, the LSTM's embedding
    columns equal and its z columns fresh, the encoder untouched by it."""
    from textvae.modeling import TextVAE

    lm_dir = tmp_path / "lm"
    train(tiny_settings("model.model_variant=lm", "train.max_steps=3"), lm_dir)
    lm = TextVAE.from_pretrained(lm_dir).state_dict()
    vae_dir = tmp_path / "vae"
    train(tiny_settings(f"train.decoder_from={lm_dir}", "train.max_steps=1", "train.optimizer=sgd", "train.lr=1e-9"),
          vae_dir)
    start = TextVAE.from_pretrained(vae_dir).state_dict()  # one step at a negligible LR: the weights it started from
    shared = [name for name in lm if start[name].shape == lm[name].shape]
    assert {"decoder.embedding.weight", "decoder.output.weight", "decoder.lstm.weight_hh_l0"} <= set(shared)
    assert all(torch.allclose(start[name], lm[name], atol=1e-6) for name in shared)
    name = "decoder.lstm.weight_ih_l0"
    words = lm[name].shape[1]
    assert start[name].shape[1] > words  # the VAE's inputs: the word embedding, then z
    assert torch.allclose(start[name][:, :words], lm[name], atol=1e-6)
    assert start[name][:, words:].abs().max() > 0  # z's columns: freshly drawn, not zeros, not the LM's
    fresh = tmp_path / "fresh"
    train(tiny_settings("train.max_steps=1", "train.optimizer=sgd", "train.lr=1e-9"), fresh)
    assert not torch.allclose(TextVAE.from_pretrained(fresh).state_dict()["decoder.output.weight"],
                              lm["decoder.output.weight"], atol=1e-3)


def test_decoder_from_mistakes_are_one_line_errors(tmp_path):
    vae_dir = tmp_path / "vae"
    train(tiny_settings("train.max_steps=1"), vae_dir)
    with pytest.raises(TextVAEError, match="train.decoder_from: .* is a VAE, not a language model"):
        train(tiny_settings(f"train.decoder_from={vae_dir}", "train.max_steps=1"), tmp_path / "a")
    with pytest.raises(TextVAEError, match="train.decoder_from: .*train.pretrain_ae_steps"):
        train(tiny_settings(f"train.decoder_from={vae_dir}", "train.pretrain_ae_steps=2", "train.max_steps=1"),
              tmp_path / "b")
    lm_dir = tmp_path / "lm"
    train(tiny_settings("model.model_variant=lm", "train.max_steps=1"), lm_dir)
    with pytest.raises(TextVAEError, match="train.decoder_from: the decoder of .* does not fit"):
        train(tiny_settings(f"train.decoder_from={lm_dir}", "model.decoder_hidden_size=20", "train.max_steps=1"),
              tmp_path / "c")
    with pytest.raises(TextVAEError, match="train.decoder_from: .* has no model.safetensors"):
        train(tiny_settings(f"train.decoder_from={tmp_path / 'nothing'}", "train.max_steps=1"), tmp_path / "d")
