"""Pretrained Hugging Face encoders and decoders (Optimus) from local folders: tiny randomly initialised BERT-like
and GPT-2-like models and tokenizers are built here from configs, so nothing is downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import read_metrics
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

import textvae
from textvae.training import setup as training
from textvae.cli import main
from textvae.training.collapse import reset_decoder
from textvae.config import load_config
from textvae.data import collate
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, TextVAEConfig, check_model_section
from textvae.modeling.pretrained import ENCODER_TOKENIZER
from textvae.data.synthetic import generate_split
from textvae.data.tokenization import encode_texts, load_pretrained_tokenizer, special_ids, vocabulary_size
from textvae.config import resumed_config
from textvae.training import train

SENTENCES = ["the brave sailor will reach the quiet bridge .", "a dog ran .",
             "did the nervous pilots miss the museum ?"]


def corpus_texts(count: int, seed: int = 0) -> list[str]:
    return [row["text"] for row in generate_split(count, seed)]


def bert_like(folder: Path) -> Path:
    """A 2-layer BERT of width 32 with a lowercasing WordPiece tokenizer that wraps sentences in [CLS] ... [SEP]."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(corpus_texts(400), trainers.WordPieceTrainer(
        vocab_size=150, special_tokens=specials, show_progress=False))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]")])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    torch.manual_seed(1)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    BertModel(config).save_pretrained(folder)
    return folder


def gpt2_like(folder: Path) -> Path:
    """A 2-layer GPT-2 of width 32 with a byte-level BPE tokenizer (no <pad> <bos> <eos> <unk> of its own)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus_texts(400), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>").save_pretrained(folder)
    torch.manual_seed(2)
    config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {"bert": bert_like(root / "bert"), "gpt2": gpt2_like(root / "gpt2")}


@pytest.fixture(scope="module")
def tokenizer(folders):
    return load_pretrained_tokenizer(folders["gpt2"])


def optimus(folders, tokenizer, seed: int = 0, **overrides) -> TextVAE:
    """A TextVAE with the tiny BERT encoder and GPT-2 decoder, in eval mode, ready to encode."""
    settings = {"encoder_type": "pretrained", "decoder_type": "pretrained", "latent_size": 4, "z_conditioning": "both",
                "pretrained_encoder": str(folders["bert"]), "pretrained_decoder": str(folders["gpt2"])}
    settings.update(overrides)
    torch.manual_seed(seed)
    model = TextVAE(TextVAEConfig(vocab_size=vocabulary_size(tokenizer), **special_ids(tokenizer), **settings))
    model.attach_tokenizer(tokenizer)
    return model.eval()


def batch(tokenizer, sentences=SENTENCES):
    special = special_ids(tokenizer)
    return collate(encode_texts(tokenizer, sentences), list(range(len(sentences))), special["bos_token_id"],
                   special["eos_token_id"], special["pad_token_id"])


def teacher_forced_logits(model, token_ids, z):
    hidden, _ = model.decoder(token_ids[:, :-1], z)
    return model.decoder.logits(hidden)


# ---- tokenizer and weights --------------------------------------------------------------------------

def test_the_decoder_tokenizer_gains_the_special_tokens_at_the_end(folders, tokenizer):
    own = Tokenizer.from_file(str(folders["gpt2"] / "tokenizer.json"))
    base = own.get_vocab_size()
    assert vocabulary_size(tokenizer) == base + 4
    assert sorted(special_ids(tokenizer).values()) == list(range(base, base + 4))
    assert encode_texts(tokenizer, ["the dog ran ."]) == [own.encode("the dog ran .").ids]


def test_pretrained_weights_are_used_and_new_tokens_get_rows_of_their_own(folders, tokenizer):
    model = optimus(folders, tokenizer)
    gpt2 = GPT2LMHeadModel.from_pretrained(folders["gpt2"])
    bert = BertModel.from_pretrained(folders["bert"])
    for name, weight in gpt2.state_dict().items():
        assert torch.equal(model.decoder.model.state_dict()[name], weight), name
    for name, weight in bert.state_dict().items():
        assert torch.equal(model.encoder.model.state_dict()[name], weight), name
    assert model.decoder.added_embeddings.shape == (4, 32)
    assert model.decoder.output_weight().shape == (vocabulary_size(tokenizer), 32)
    assert model.config.pretrained_decoder_config["n_layer"] == 2  # recorded, for loading without the folder


def test_the_encoder_reads_the_sentence_with_its_own_tokenizer(folders, tokenizer):
    model = optimus(folders, tokenizer, encoder_pooling="summary_token")
    data = batch(tokenizer)
    summaries = model.encoder(data.token_ids[:, 1:], data.lengths - 1)
    bert = BertModel.from_pretrained(folders["bert"]).eval()
    own = Tokenizer.from_file(str(folders["bert"] / "tokenizer.json"))
    for row, sentence in enumerate(SENTENCES):
        ids = torch.tensor([own.encode(sentence).ids])
        assert own.id_to_token(ids[0, 0].item()) == "[CLS]"
        expected = bert(input_ids=ids).last_hidden_state[0, 0]  # alone: no padding at all
        assert torch.allclose(summaries[row], expected, atol=1e-5)


def test_mean_pooling_ignores_padding(folders, tokenizer):
    model = optimus(folders, tokenizer, encoder_pooling="mean")
    data = batch(tokenizer)
    together = model.encode(data.token_ids, data.lengths)[0]
    for row, sentence in enumerate(SENTENCES):
        single = batch(tokenizer, [sentence])
        alone = model.encode(single.token_ids, single.lengths)[0]
        assert torch.allclose(together[row], alone[0], atol=1e-5)


# ---- the decoder: z, causality, cache ----------------------------------------------------------------

def test_without_z_the_decoder_is_the_pretrained_language_model(folders, tokenizer):
    model = optimus(folders, tokenizer, model_variant="lm")
    data = batch(tokenizer)
    words = data.token_ids[:, 1: int(data.lengths.min()) - 1]  # pretrained ids only: no <bos>, <eos> or <pad>
    assert int(words.max()) < model.decoder.pretrained_vocab
    gpt2 = GPT2LMHeadModel.from_pretrained(folders["gpt2"]).eval()
    hidden, _ = model.decoder(words, None)
    expected = gpt2(input_ids=words).logits
    assert torch.allclose(model.decoder.logits(hidden)[..., : expected.size(-1)], expected, atol=1e-5)


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_every_conditioning_makes_the_logits_depend_on_z(folders, tokenizer, conditioning):
    model = optimus(folders, tokenizer, z_conditioning=conditioning)
    token_ids = batch(tokenizer).token_ids
    first = teacher_forced_logits(model, token_ids, torch.zeros(3, 4))
    second = teacher_forced_logits(model, token_ids, torch.ones(3, 4))
    assert (first - second).abs()[:, 0].max() > 1e-4  # already at the first position


@pytest.mark.parametrize("conditioning", ["memory", "input", "both"])
def test_cached_decoding_equals_teacher_forced_logits(folders, tokenizer, conditioning):
    model = optimus(folders, tokenizer, z_conditioning=conditioning)
    token_ids, z = batch(tokenizer).token_ids, torch.randn(3, 4)
    expected = teacher_forced_logits(model, token_ids, z)
    state, steps = None, []
    for position in range(token_ids.size(1) - 1):
        logits, state = model.decode_step(token_ids[:, position], z, state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, dim=1), expected, atol=1e-5)


def test_the_decoder_never_sees_the_future(folders, tokenizer):
    model = optimus(folders, tokenizer)
    token_ids, z = batch(tokenizer).token_ids, torch.randn(3, 4)
    changed = token_ids.clone()
    changed[:, 4:] = special_ids(tokenizer)["unk_token_id"]
    before, after = teacher_forced_logits(model, token_ids, z), teacher_forced_logits(model, changed, z)
    assert torch.equal(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_reordered_states_continue_the_chosen_rows(folders, tokenizer):
    model = optimus(folders, tokenizer)
    token_ids, z = batch(tokenizer).token_ids, torch.randn(3, 4)
    state = None
    for position in range(3):
        _, state = model.decode_step(token_ids[:, position], z, state)
    order = torch.tensor([2, 0, 0])
    picked, _ = model.decode_step(token_ids[order, 3], z[order], model.decoder.reorder_state(state, order))
    full, _ = model.decode_step(token_ids[:, 3], z, state)  # the original state is left unchanged
    assert torch.allclose(picked, full[order], atol=1e-6)


def test_generation_strategies_run_on_a_pretrained_decoder(folders, tokenizer):
    from textvae.generation import DecodingOptions, decode

    model = optimus(folders, tokenizer)
    z = torch.randn(2, 4)
    for strategy in ("greedy", "beam", "top-p"):
        generated = decode(model, z, DecodingOptions(strategy=strategy, max_length=6, beam_size=3),
                           generator=torch.Generator().manual_seed(0))
        assert len(generated) == 2 and all(len(ids) <= 6 for ids in generated)


# ---- saving and loading ------------------------------------------------------------------------------

def test_save_and_load_without_the_folders_reproduce_identical_logits(folders, tokenizer, tmp_path):
    copies = {name: shutil.copytree(folder, tmp_path / name) for name, folder in folders.items()}
    model = optimus(copies, tokenizer)
    model.save_pretrained(tmp_path / "run")
    tokenizer.save_pretrained(tmp_path / "run")
    for folder in copies.values():
        shutil.rmtree(folder)
    loaded = TextVAE.from_pretrained(tmp_path / "run").eval()
    data, z = batch(tokenizer), torch.randn(3, 4)
    assert torch.equal(teacher_forced_logits(model, data.token_ids, z), teacher_forced_logits(loaded, data.token_ids, z))
    assert torch.equal(model.encode(data.token_ids, data.lengths)[0], loaded.encode(data.token_ids, data.lengths)[0])
    assert loaded.decoder.model.lm_head.weight is loaded.decoder.model.transformer.wte.weight  # still tied
    assert (tmp_path / "run" / ENCODER_TOKENIZER).is_file()


def test_loading_needs_the_encoder_tokenizer(folders, tokenizer, tmp_path):
    optimus(folders, tokenizer).save_pretrained(tmp_path)
    (tmp_path / ENCODER_TOKENIZER).unlink()
    with pytest.raises(TextVAEError, match="encoder_tokenizer.json"):
        TextVAE.from_pretrained(tmp_path)


def test_an_encoder_without_the_run_tokenizer_says_what_to_do(folders, tokenizer):
    model = optimus(folders, tokenizer)
    model.encoder.reader = None
    data = batch(tokenizer)
    with pytest.raises(TextVAEError, match="attach_tokenizer"):
        model.encode(data.token_ids, data.lengths)


# ---- training end to end -----------------------------------------------------------------------------

def corpus_files(folder: Path) -> list[str]:
    """A small slice of the embedded corpus as text files, so a run evaluates in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", 300, 0), ("valid", 40, 1), ("test", 40, 2)):
        (folder / f"{split}.txt").write_text("\n".join(corpus_texts(count, seed)) + "\n")
    return [f"data.source={folder}", "data.max_length=100"]  # byte-level BPE: more tokens than words


def run_settings(folders, data: list[str], *extra: str) -> list[str]:
    return [*data, "model.encoder_type=pretrained", "model.decoder_type=pretrained",
            f"model.pretrained_encoder={folders['bert']}", f"model.pretrained_decoder={folders['gpt2']}",
            "model.latent_size=4", "train.batch_size=16", "train.progress_bar=false", "train.lr=0.001",
            "train.log_every=2", *extra]


@pytest.fixture(scope="module")
def optimus_run(folders, tmp_path_factory) -> Path:
    """A few steps of Optimus training (word dropout, free bits) with the CLI, on copies of the folders."""
    root = tmp_path_factory.mktemp("optimus")
    copies = {name: shutil.copytree(folder, root / name) for name, folder in folders.items()}
    settings = run_settings(copies, corpus_files(root / "data"), "train.max_steps=6", "train.eval_every=3",
                            "train.word_dropout=0.3", "train.free_bits=0.5", "train.kl_anneal_steps=4")
    arguments = ["train", "--out", str(root / "run"), "--quiet", "--set", "tokenizer.kind=pretrained"]  # demo recipe: word
    for value in settings:
        arguments += ["--set", value]
    assert main(arguments) == 0
    return root


def test_training_writes_a_run_that_evaluates_samples_and_reconstructs(optimus_run, capsys):
    run = optimus_run / "run"
    lines = read_metrics(run)
    assert [line["step"] for line in lines if line["split"] == "valid"] == [3, 6]
    assert all(torch.isfinite(torch.tensor(line["loss"])) for line in lines)
    assert (run / ENCODER_TOKENIZER).is_file()
    assert main(["evaluate", str(run), "--split", "test", "--iw-samples", "3", "--samples", "4"]) == 0
    results = json.loads((run / "results.json").read_text())["test"]  # keyed by what was evaluated
    assert results["sentences"] == 40 and results["nll"] <= results["neg_elbo"] + 1e-3
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "3", "--max-length", "8", "--strategy", "beam", "--beam-size", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["reconstruct", str(run), SENTENCES[0], "--max-length", "8"]) == 0
    assert capsys.readouterr().out.startswith(SENTENCES[0] + "\t->\t")


def test_a_run_loads_and_gives_identical_logits_after_the_folders_are_gone(optimus_run, tmp_path):
    run = shutil.copytree(optimus_run / "run", tmp_path / "run")
    before = textvae.load(run, device="cpu", precision="fp32")
    hidden_folders = tmp_path / "hidden"
    hidden_folders.mkdir()
    for name in ("bert", "gpt2"):
        shutil.move(optimus_run / name, hidden_folders / name)
    try:
        after = textvae.load(run, device="cpu", precision="fp32")
        data, z = batch(before.tokenizer), torch.randn(3, 4)
        assert torch.equal(teacher_forced_logits(before.model, data.token_ids, z),
                           teacher_forced_logits(after.model, data.token_ids, z))
        assert (before.encode(SENTENCES) == after.encode(SENTENCES)).all()
        assert after.sample(2, seed=0, max_length=6) == before.sample(2, seed=0, max_length=6)
    finally:
        for name in ("bert", "gpt2"):
            shutil.move(hidden_folders / name, optimus_run / name)


def test_frozen_pretrained_weights_stay_identical_while_the_rest_trains(folders, tmp_path):
    data = corpus_files(tmp_path / "data")
    config = load_config(None, run_settings(folders, data, "model.freeze_encoder=true", "model.freeze_decoder=true",
                                            "train.max_steps=3", "train.eval_every=3", "model.z_conditioning=both"))
    train(config, tmp_path / "run")
    trained = TextVAE.from_pretrained(tmp_path / "run")
    gpt2 = GPT2LMHeadModel.from_pretrained(folders["gpt2"]).state_dict()
    bert = BertModel.from_pretrained(folders["bert"]).state_dict()
    assert all(torch.equal(trained.decoder.model.state_dict()[name], weight) for name, weight in gpt2.items())
    assert all(torch.equal(trained.encoder.model.state_dict()[name], weight) for name, weight in bert.items())
    initial = optimus(folders, load_pretrained_tokenizer(folders["gpt2"]))  # training's start: same seed
    for name in ("decoder.added_embeddings", "decoder.z_to_memory.weight", "decoder.z_to_input.weight",
                 "posterior.to_mean_logvar.weight"):
        moved = (trained.state_dict()[name] - initial.state_dict()[name]).abs().max()
        assert 0 < moved < 0.01, name  # three Adam steps of lr 0.001 from the same start


def test_resume_continues_exactly_as_an_uninterrupted_run(folders, tmp_path):
    data = corpus_files(tmp_path / "data")
    extra = ["train.eval_every=2", "train.word_dropout=0.3", "model.z_conditioning=memory"]
    train(load_config(None, run_settings(folders, data, "train.max_steps=4", *extra)), tmp_path / "straight")
    train(load_config(None, run_settings(folders, data, "train.max_steps=2", *extra)), tmp_path / "cut")
    train(resumed_config(tmp_path / "cut", ["train.max_steps=4"]), tmp_path / "cut", resume=True)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_decoder_reset_restores_the_pretrained_decoder(folders, tokenizer):
    model = optimus(folders, tokenizer)
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.add_(1.0)
    optimizer = torch.optim.Adam(model.parameters())
    reset_decoder(model, [optimizer], seed=5)
    gpt2 = GPT2LMHeadModel.from_pretrained(folders["gpt2"]).state_dict()
    assert all(torch.equal(model.decoder.model.state_dict()[name], weight) for name, weight in gpt2.items())
    again = optimus(folders, tokenizer)
    reset_decoder(again, [], seed=5)
    assert torch.equal(model.decoder.z_to_memory.weight, again.decoder.z_to_memory.weight)  # drawn from the seed


# ---- mixed pairs -------------------------------------------------------------------------------------

def test_a_pretrained_encoder_with_an_lstm_decoder_trains_saves_and_loads(folders, tmp_path):
    data = corpus_files(tmp_path / "data")
    settings = [*data, "model.encoder_type=pretrained", f"model.pretrained_encoder={folders['bert']}",
                "model.latent_size=4", "model.embedding_size=16", "model.decoder_hidden_size=24",
                "train.batch_size=16", "train.progress_bar=false", "train.max_steps=2", "train.eval_every=2"]
    train(load_config(None, settings), tmp_path / "run")
    vae = textvae.load(tmp_path / "run", device="cpu", precision="fp32")
    assert vae.encode(SENTENCES).shape == (3, 4)
    assert len(vae.reconstruct(SENTENCES[:1], max_length=6)) == 1


def test_an_lstm_encoder_with_a_pretrained_decoder_round_trips(folders, tokenizer, tmp_path):
    model = optimus(folders, tokenizer, encoder_type="lstm", pretrained_encoder="", embedding_size=8,
                    encoder_hidden_size=8)
    model.save_pretrained(tmp_path)
    loaded = TextVAE.from_pretrained(tmp_path).eval()
    data = batch(tokenizer)
    assert torch.equal(model(data.token_ids, data.lengths, sample_z=False).rec_nll,
                       loaded(data.token_ids, data.lengths, sample_z=False).rec_nll)


# ---- clear errors ------------------------------------------------------------------------------------

def test_a_missing_folder_or_a_folder_without_a_model_is_named(folders, tokenizer, tmp_path):
    with pytest.raises(TextVAEError, match="model.pretrained_decoder: folder not found"):
        optimus({"bert": folders["bert"], "gpt2": tmp_path / "nowhere"}, tokenizer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextVAEError, match="model.pretrained_encoder: .* has no config.json"):
        optimus({"bert": tmp_path / "empty", "gpt2": folders["gpt2"]}, tokenizer)


def test_models_on_the_wrong_side_are_refused(folders, tokenizer):
    with pytest.raises(TextVAEError, match="pretrained_encoder: .*left-to-right"):
        optimus({"bert": folders["gpt2"], "gpt2": folders["gpt2"]}, tokenizer)
    with pytest.raises(TextVAEError, match="pretrained_decoder: .*bidirectional bert"):
        optimus({"bert": folders["bert"], "gpt2": folders["bert"]}, tokenizer)


def test_config_mistakes_are_one_line_errors(folders):
    with pytest.raises(TextVAEError, match="model.pretrained_encoder is set but model.encoder_type is lstm"):
        check_model_section({"pretrained_encoder": str(folders["bert"])})
    with pytest.raises(TextVAEError, match="model.freeze_decoder: only pretrained weights"):
        check_model_section({"freeze_decoder": True})
    with pytest.raises(TextVAEError, match="unknown config key 'model.pretrained_decoder_config'"):
        check_model_section({"pretrained_decoder_config": {}})
    with pytest.raises(TextVAEError, match="tokenizer.kind: 'word' trains a new vocabulary"):
        load_config(None, ["model.decoder_type=pretrained", f"model.pretrained_decoder={folders['gpt2']}",
                           "tokenizer.kind=word"])
    with pytest.raises(TextVAEError, match="tokenizer.kind: 'pretrained' reads a model folder"):
        load_config(None, ["tokenizer.kind=pretrained"])
    settings = load_config(None, ["model.decoder_type=pretrained", f"model.pretrained_decoder={folders['gpt2']}"])
    assert (settings.tokenizer.kind, settings.tokenizer.path) == ("pretrained", str(folders["gpt2"]))


def test_the_example_recipe_is_a_valid_config():
    settings = load_config(Path(__file__).resolve().parents[1] / "configs" / "optimus_local.yaml")
    assert (settings.tokenizer.kind, settings.tokenizer.path) == ("pretrained", "models/gpt2")
    assert check_model_section(settings.model)["encoder_type"] == "pretrained"


def test_the_memory_check_counts_pretrained_models_without_reading_their_weights(folders, tokenizer, monkeypatch):
    settings = {"encoder_type": "pretrained", "decoder_type": "pretrained", "latent_size": 4,
                "pretrained_encoder": str(folders["bert"]), "pretrained_decoder": str(folders["gpt2"])}
    config = TextVAEConfig(vocab_size=vocabulary_size(tokenizer), **special_ids(tokenizer), **settings)
    parameters = sum(p.numel() for p in optimus(folders, tokenizer).parameters())

    def no_weights(*args, **kwargs):
        raise AssertionError("the memory check read pretrained weights")

    monkeypatch.setattr("textvae.modeling.pretrained.load_folder_model", no_weights)
    needed = parameters * training.BYTES_PER_PARAMETER
    monkeypatch.setattr("textvae.training.setup.free_memory", lambda device: needed)
    training.check_model_fits(config, torch.device("cpu"))  # exactly enough memory: accepted
    monkeypatch.setattr("textvae.training.setup.free_memory", lambda device: needed - 1)
    with pytest.raises(TextVAEError, match=f"the model has {parameters:,} parameters"):
        training.check_model_fits(config, torch.device("cpu"))
    assert not config.pretrained_decoder_config  # the check leaves the config as it was: training reads the folder
