"""TextVAEConfig: every size and choice of the model, saved as config.json beside the weights."""

from __future__ import annotations

import inspect
from typing import Any

from transformers import PretrainedConfig

from ..checks import is_real, is_whole
from ..config import check_value, did_you_mean
from ..errors import TextVAEError
from .registry import DECODERS, ENCODERS

VARIANTS = ("vae", "lm")
ENCODER_TYPES, DECODER_TYPES = tuple(ENCODERS), tuple(DECODERS)  # what the registry can build
# How z may reach each kind of decoder; 'both' is the decoder's two ways together.
Z_CONDITIONING = {"lstm": ("init", "input", "both"), "transformer": ("memory", "input", "both"),
                  "pretrained": ("memory", "input", "both")}
POSITION_ENCODINGS = ("learned", "sinusoidal")
POOLINGS = ("mean", "summary_token")
LSTM_POOLINGS = ("final", "mean", "max")


class TextVAEConfig(PretrainedConfig):
    """Sizes of a sentence VAE (Bowman et al. 2016) or, with model_variant='lm', of the same decoder without z.

    encoder_type and decoder_type pick LSTMs, Transformers (sizes: *_hidden_size is the model width,
    *_layers the depth, attention_heads, feedforward_size, position_encoding, max_positions,
    transformer_dropout) or pretrained Hugging Face models read from local folders (pretrained_encoder,
    pretrained_decoder; freeze_* keeps their weights fixed; modeling.pretrained). The folders are read once,
    when a model is first built: pretrained_encoder_config / pretrained_decoder_config then record the Hugging
    Face configs, so a saved run rebuilds those models without the folders (not set by users).
    z_conditioning says how the latent code reaches the decoder: for an LSTM, 'init' maps z to the initial
    state and 'input' concatenates z to every input embedding; for a Transformer (own or pretrained),
    'memory' makes z a key/value slot every layer attends to and 'input' adds z to every input embedding;
    'both' does the two (for Transformers, the Optimus combination). encoder_pooling turns a Transformer
    encoder's token states into one summary: their 'mean', or a learned 'summary_token' read at the front
    (for a pretrained encoder: the first token its tokenizer puts in front, e.g. BERT's [CLS]).
    lstm_encoder_pooling does the same for an LSTM encoder's top-layer states: the 'final' state of each
    direction (Bowman et al. 2016), or the 'mean' or element-wise 'max' over every position (Conneau et al. 2017's
    max-pooled BiLSTM), which see the middle of a long sentence as directly as its ends.
    Dropout: embedding_dropout on the decoder's input embeddings, decoder_dropout on its outputs before the
    vocabulary layer, encoder_embedding_dropout on the encoder's input embeddings.
    bn_vae_gamma > 0 batch-normalises the posterior means with that fixed scale (BN-VAE, Zhu et al. 2020;
    modeling.posterior).
    bag_of_words_weight > 0 adds a linear map from z to the vocabulary whose bag-of-words loss (Zhao et al. 2017),
    times this weight, joins the training objective: z then names a sentence's words (modeling.bag_of_words).
    bag_of_words_bias adds that head's scores of z to the decoder's vocabulary scores at every step, a per-sentence
    bias on the output as TopicRNN's topic vector is (Dieng et al. 2017): the decoder then needs to carry the order
    of a sentence's words, not which words they are. It makes the head part of the decoder (with or without its
    loss) and changes p(x|z), so the likelihood, ELBO and generation all use it.
    weight_init_range > 0 draws every weight and bias of textvae's own layers from U(-r, r), and
    embedding_init_range > 0 the embeddings from U(-e, e), as the published PTB code does (0.01 and 0.1;
    modeling.initialization); 0 keeps PyTorch's default initialisation.
    """

    model_type = "textvae"

    def __init__(
        self,
        vocab_size: int = 10000,
        model_variant: str = "vae",
        embedding_size: int = 256,
        encoder_hidden_size: int = 256,
        encoder_layers: int = 1,
        encoder_bidirectional: bool = False,
        decoder_hidden_size: int = 256,
        decoder_layers: int = 1,
        latent_size: int = 32,
        z_conditioning: str = "both",
        embedding_dropout: float = 0.0,
        encoder_embedding_dropout: float = 0.0,
        decoder_dropout: float = 0.0,
        bn_vae_gamma: float = 0.0,
        bag_of_words_weight: float = 0.0,
        bag_of_words_bias: bool = False,
        weight_init_range: float = 0.0,
        embedding_init_range: float = 0.0,
        encoder_type: str = "lstm",
        decoder_type: str = "lstm",
        attention_heads: int = 4,
        feedforward_size: int = 1024,
        position_encoding: str = "learned",
        max_positions: int = 512,
        encoder_pooling: str = "mean",
        lstm_encoder_pooling: str = "final",
        transformer_dropout: float = 0.1,
        pretrained_encoder: str = "",
        pretrained_decoder: str = "",
        freeze_encoder: bool = False,
        freeze_decoder: bool = False,
        pretrained_encoder_config: dict | None = None,
        pretrained_decoder_config: dict | None = None,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        unk_token_id: int = 3,
        **kwargs: Any,
    ):
        if kwargs.get("decoder_bidirectional"):
            raise TextVAEError("model.decoder_bidirectional: a decoder cannot be bidirectional (it would see the "
                               "words it must predict); remove the key")
        kwargs.pop("decoder_bidirectional", None)
        self.vocab_size = vocab_size
        self.model_variant = model_variant
        self.embedding_size = embedding_size
        self.encoder_hidden_size = encoder_hidden_size
        self.encoder_layers = encoder_layers
        self.encoder_bidirectional = encoder_bidirectional
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_layers = decoder_layers
        self.latent_size = latent_size
        self.z_conditioning = z_conditioning
        self.embedding_dropout = embedding_dropout
        self.encoder_embedding_dropout = encoder_embedding_dropout
        self.decoder_dropout = decoder_dropout
        self.bn_vae_gamma = bn_vae_gamma
        self.bag_of_words_weight = bag_of_words_weight
        self.bag_of_words_bias = bag_of_words_bias
        self.weight_init_range = weight_init_range
        self.embedding_init_range = embedding_init_range
        self.encoder_type = encoder_type
        self.decoder_type = decoder_type
        self.attention_heads = attention_heads
        self.feedforward_size = feedforward_size
        self.position_encoding = position_encoding
        self.max_positions = max_positions
        self.encoder_pooling = encoder_pooling
        self.lstm_encoder_pooling = lstm_encoder_pooling
        self.transformer_dropout = transformer_dropout
        self.pretrained_encoder = pretrained_encoder
        self.pretrained_decoder = pretrained_decoder
        self.freeze_encoder = freeze_encoder
        self.freeze_decoder = freeze_decoder
        self.pretrained_encoder_config = pretrained_encoder_config
        self.pretrained_decoder_config = pretrained_decoder_config
        self.unk_token_id = unk_token_id
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.validate_sizes()

    @property
    def has_latent(self) -> bool:
        """True for a VAE, False for the language-model baseline."""
        return self.model_variant == "vae"

    @property
    def position_limit(self) -> int | None:
        """The most positions a sentence may take (<bos> + words, or words + <eos>): max_positions when a
        Transformer of textvae's reads it, None when no side has a limit of its own."""
        sides = [self.decoder_type] + ([self.encoder_type] if self.has_latent else [])
        return self.max_positions if "transformer" in sides else None

    def validate_sizes(self) -> None:
        """Reject impossible sizes and unknown choices with a message naming the key."""
        if self.model_variant not in VARIANTS:
            raise TextVAEError(f"model.model_variant: '{self.model_variant}' is not one of {', '.join(VARIANTS)}")
        for key, choices in (("encoder_type", ENCODER_TYPES), ("decoder_type", DECODER_TYPES),
                             ("position_encoding", POSITION_ENCODINGS), ("encoder_pooling", POOLINGS),
                             ("lstm_encoder_pooling", LSTM_POOLINGS)):
            if getattr(self, key) not in choices:
                raise TextVAEError(f"model.{key}: '{getattr(self, key)}' is not one of {', '.join(choices)}")
        allowed = Z_CONDITIONING[self.decoder_type]
        if self.z_conditioning not in allowed:
            raise TextVAEError(f"model.z_conditioning: '{self.z_conditioning}' is not a way into a "
                               f"{self.decoder_type} decoder; use one of {', '.join(allowed)}")
        for key in ("vocab_size", "embedding_size", "encoder_hidden_size", "encoder_layers",
                    "decoder_hidden_size", "decoder_layers", "latent_size", "attention_heads",
                    "feedforward_size", "max_positions"):
            value = getattr(self, key)
            if not is_whole(value) or value <= 0:
                raise TextVAEError(f"model.{key}: must be a positive whole number, got {value!r}")
        for side in ("encoder", "decoder"):
            width = getattr(self, f"{side}_hidden_size")
            if getattr(self, f"{side}_type") == "transformer" and width % self.attention_heads:
                raise TextVAEError(f"model.{side}_hidden_size: a Transformer's width ({width}) must be a multiple "
                                   f"of model.attention_heads ({self.attention_heads})")
            if getattr(self, f"{side}_type") == "pretrained" and not getattr(self, f"pretrained_{side}"):
                raise TextVAEError(f"model.pretrained_{side}: {side}_type is pretrained, so give the local folder "
                                   f"of a Hugging Face model (config.json + weights)")
            if getattr(self, f"{side}_type") != "pretrained" and getattr(self, f"pretrained_{side}"):
                raise TextVAEError(f"model.pretrained_{side} is set but model.{side}_type is "
                                   f"{getattr(self, f'{side}_type')}; set model.{side}_type: pretrained to use the "
                                   f"folder, or remove model.pretrained_{side}")
            if getattr(self, f"{side}_type") != "pretrained" and getattr(self, f"freeze_{side}"):
                raise TextVAEError(f"model.freeze_{side}: only pretrained weights can be kept fixed, but "
                                   f"model.{side}_type is {getattr(self, f'{side}_type')}; remove the key")
        for key in ("embedding_dropout", "encoder_embedding_dropout", "decoder_dropout", "transformer_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise TextVAEError(f"model.{key}: must be in [0, 1), got {value!r}")
        for key in ("weight_init_range", "embedding_init_range"):
            value = getattr(self, key)
            if not is_real(value) or not 0.0 <= value < float("inf"):
                raise TextVAEError(f"model.{key}: must be a number >= 0 (0 = PyTorch's default initialisation), "
                                   f"got {value!r}")
        gamma = self.bn_vae_gamma
        if not is_real(gamma) or not 0.0 <= gamma < float("inf"):
            raise TextVAEError(f"model.bn_vae_gamma: must be a number >= 0 (0 = no BN-VAE), got {gamma!r}")
        weight = self.bag_of_words_weight
        if not is_real(weight) or not 0.0 <= weight < float("inf"):
            raise TextVAEError(f"model.bag_of_words_weight: must be a number >= 0 (0 = no bag-of-words loss), "
                               f"got {weight!r}")
        if weight and not self.has_latent:
            raise TextVAEError("model.bag_of_words_weight: a language model has no z to predict the words from; "
                               "remove the key or set model.model_variant: vae")
        if not isinstance(self.bag_of_words_bias, bool):
            raise TextVAEError(f"model.bag_of_words_bias: must be true or false, got {self.bag_of_words_bias!r}")
        if self.bag_of_words_bias and not self.has_latent:
            raise TextVAEError("model.bag_of_words_bias: a language model has no z to bias its output with; "
                               "remove the key or set model.model_variant: vae")

    @property
    def has_bag_of_words_head(self) -> bool:
        """True when the model has the bag-of-words head: for its loss, its output bias, or both."""
        return self.has_latent and (self.bag_of_words_weight > 0 or self.bag_of_words_bias)


def model_section_defaults() -> dict[str, Any]:
    """The keys a `model:` config section may hold, with their defaults."""
    parameters = inspect.signature(TextVAEConfig.__init__).parameters
    skip = {"self", "kwargs", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id",
            "pretrained_encoder_config", "pretrained_decoder_config"}  # recorded by the model, not set by users
    keys = {name: p.default for name, p in parameters.items() if name not in skip}
    keys["model_type"] = "vae"  # the name configs used for model_variant before 2026-12-02: still read
    return keys


def check_model_section(values: dict[str, Any]) -> dict[str, Any]:
    """Check a `model:` section (unknown keys with a hint, types, sizes) and map the older model_type → model_variant."""
    defaults = model_section_defaults()
    checked = {}
    for key, value in values.items():
        if key == "decoder_bidirectional":
            raise TextVAEError("model.decoder_bidirectional: a decoder cannot be bidirectional (it would see the "
                               "words it must predict); remove the key")
        if key not in defaults:
            raise TextVAEError(f"unknown config key 'model.{key}'{did_you_mean(key, list(defaults))}")
        default = defaults[key]
        annotation = "str" if isinstance(default, str) else ""
        checked[key] = check_value(f"model.{key}", value, default, annotation)
    if "model_type" in checked:
        checked["model_variant"] = checked.pop("model_type")
    TextVAEConfig(**checked)  # sizes and choices checked now, before any data is read
    return checked


def build_model_config(section: dict[str, Any], vocab_size: int, special_ids: dict[str, int]) -> TextVAEConfig:
    """A TextVAEConfig from a checked `model:` section and the tokenizer's vocabulary and special ids."""
    return TextVAEConfig(vocab_size=vocab_size, **special_ids, **check_model_section(section))
