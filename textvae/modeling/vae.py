"""TextVAE: encoder → Gaussian posterior → z → autoregressive decoder, as a transformers PreTrainedModel.

Sentences arrive as <bos> w1 .. wn <eos> <pad>...; the encoder reads w1 .. wn <eos>, the decoder reads
<bos> w1 .. wn and predicts w1 .. wn <eos>. Only real (non-padding) positions are projected to the
vocabulary, so padding costs nothing in the output layer and can never change the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .bag_of_words import BagOfWordsHead
from .configuration import TextVAEConfig
from .initialization import initialize_uniformly
from .posterior import GaussianPosterior, kl_per_dimension, reparameterize
from .registry import build_decoder, build_encoder


@dataclass
class TextVAEOutput(ModelOutput):
    """Per-sentence pieces of the ELBO; the objective turns them into a loss.

    rec_nll: (batch,) −log p(x|z) in nats, summed over predicted tokens (words and <eos>).
    kl_per_dimension: (batch, latent) KL(q(z|x) || p(z)) of each latent dimension; None for the LM baseline
    (the per-sentence KL, as `Loss.kl` and the reports give it, is its sum over the last axis).
    token_counts: (batch,) predicted tokens per sentence.
    bag_of_words_nll: (batch,) the bag-of-words loss of z (modeling.bag_of_words), in training mode when the
    model has the head; else None.
    """

    rec_nll: torch.Tensor | None = None
    kl_per_dimension: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    z: torch.Tensor | None = None
    token_counts: torch.Tensor | None = None
    bag_of_words_nll: torch.Tensor | None = None


def build_bag_of_words_head(config: TextVAEConfig) -> BagOfWordsHead:
    """A newly drawn bag-of-words head (modeling/bag_of_words.py) for `config`, initialised as every layer is."""
    return initialize_uniformly(BagOfWordsHead(config.latent_size, config.vocab_size), config)


class TextVAE(PreTrainedModel):
    """A sentence VAE (Bowman et al. 2016), or with model_variant='lm' the same decoder without z."""

    config_class = TextVAEConfig
    base_model_prefix = "textvae"
    main_input_name = "input_ids"

    def __init__(self, config: TextVAEConfig):
        super().__init__(config)
        # self.config: a pretrained encoder or decoder records its Hugging Face config there (modeling.pretrained)
        self.encoder = build_encoder(self.config) if config.has_latent else None
        self.posterior = (initialize_uniformly(GaussianPosterior(self.encoder.summary_size, config.latent_size,
                                                                 config.bn_vae_gamma), config)
                          if config.has_latent else None)
        self.bag_of_words = build_bag_of_words_head(config) if config.has_bag_of_words_head else None
        self.decoder = build_decoder(self.config)
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Keep PyTorch's default initialisation of each layer (and a pretrained model's own weights)."""

    @property
    def reads_text(self) -> bool:
        """True when the encoder is a pretrained model that re-tokenizes sentences with its own tokenizer."""
        return hasattr(self.encoder, "read_with")

    def attach_tokenizer(self, tokenizer) -> None:
        """Give a pretrained encoder the run's tokenizer (a transformers fast tokenizer), with which it reads
        sentences back as text for its own tokenizer; nothing to do for other encoders."""
        if self.reads_text:
            self.encoder.read_with(tokenizer.backend_tokenizer)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """transformers' save_pretrained, plus a pretrained encoder's own tokenizer (encoder_tokenizer.json)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.reads_text:
            self.encoder.save_tokenizer(Path(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' from_pretrained; a pretrained encoder also gets its tokenizer and the run's
        (encoder_tokenizer.json and tokenizer.json of the same folder), so the model is ready to encode."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if model.reads_text:
            model.encoder.load_tokenizers(Path(pretrained_model_name_or_path))
        return model

    def encode(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (batch, latent) of sentences given as <bos> ... <eos> <pad>."""
        if self.encoder is None:
            raise ValueError("a language model (model_variant='lm') has no encoder or latent space")
        summary = self.encoder(token_ids[:, 1:], lengths - 1)
        return self.posterior(summary)

    def forward(self, token_ids: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None, z: torch.Tensor | None = None, sample_z: bool = True,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None) -> TextVAEOutput:
        """The ELBO's pieces for a batch, given either as `token_ids` (<bos> words <eos> <pad>...) with their
        `lengths`, or as a tokenizer returns it: `model(**tokenizer(texts, padding=True, return_tensors="pt"))`,
        `input_ids` holding the words alone and `attention_mask` marking them (either padding side).
        `decoder_input_ids` overrides the teacher-forced inputs (word dropout); `z` overrides the latent code;
        `sample_z=False` decodes from the posterior mean; `generator` supplies the posterior noise (evaluation
        keeps training's random stream untouched), or `noise` (batch, latent) gives the standard-normal draws
        themselves (training)."""
        if input_ids is not None:
            if token_ids is not None:
                raise ValueError("give token_ids and lengths, or input_ids (and attention_mask), not both")
            token_ids, lengths = self.wrap_words(input_ids, attention_mask)
        elif token_ids is None or lengths is None:
            raise ValueError("forward needs token_ids and lengths, or input_ids (and attention_mask) from a tokenizer")
        mean = logvar = kl = None
        if self.config.has_latent:
            mean, logvar = self.encode(token_ids, lengths)
            kl = kl_per_dimension(mean, logvar)
            if z is None:
                z = reparameterize(mean, logvar, generator=generator, noise=noise) if sample_z else mean
        rec_nll, token_counts = self.reconstruction_nll(token_ids, lengths, z, decoder_input_ids)
        bag_of_words_nll = (self.bag_of_words(z, token_ids, lengths)
                            if self.config.bag_of_words_weight > 0 and self.training and z is not None else None)
        return TextVAEOutput(rec_nll=rec_nll, kl_per_dimension=kl, mean=mean, logvar=logvar, z=z,
                             token_counts=token_counts, bag_of_words_nll=bag_of_words_nll)

    def wrap_words(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A tokenizer's batch (words only, padded on either side, attention_mask 1 on words) as token_ids
        <bos> words <eos> <pad>... and lengths, the form the model reads."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        words = attention_mask.sum(dim=1)
        token_ids = torch.full((input_ids.size(0), (int(words.max()) if words.numel() else 0) + 2), self.config.pad_token_id,
                               dtype=torch.long, device=input_ids.device)
        for row in range(input_ids.size(0)):
            kept = input_ids[row][attention_mask[row].bool()]
            token_ids[row, 0] = self.config.bos_token_id
            token_ids[row, 1: 1 + kept.numel()] = kept
            token_ids[row, 1 + kept.numel()] = self.config.eos_token_id
        return token_ids, (words + 2).to(torch.long).cpu()

    def reconstruction_nll(self, token_ids: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor | None,
                           decoder_input_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sentence −log p(x|z) and predicted-token counts, decoding given z (no encoder pass)."""
        inputs = token_ids[:, :-1] if decoder_input_ids is None else decoder_input_ids
        hidden, _ = self.decoder(inputs, z)
        return self.sequence_nll(hidden, token_ids[:, 1:], lengths - 1, z)

    def biases_scores_with(self, z: torch.Tensor | None) -> bool:
        """True when the bag-of-words head's scores of `z` join the vocabulary scores (config.bag_of_words_bias)."""
        return self.config.bag_of_words_bias and z is not None

    def sequence_nll(self, hidden: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor,
                     z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sentence −log p(targets) from decoder states (and z, for the bag-of-words bias), projecting only
        the real positions."""
        target_lengths = target_lengths.to(hidden.device)
        positions = torch.arange(targets.size(1), device=hidden.device)
        real = positions.unsqueeze(0) < target_lengths.unsqueeze(1)
        unpadded = bool(real.all())  # length-bucketed batches mostly are: rows by reshape, no gather and scatter
        sentence_of_token = real.nonzero()[:, 0]
        added_scores = (z[sentence_of_token], self.bag_of_words.output) if self.biases_scores_with(z) else None
        if unpadded:
            token_nll = self.decoder.token_nll(hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1), added_scores)
            return token_nll.view(targets.shape).sum(dim=1), target_lengths
        token_nll = self.decoder.token_nll(hidden[real], targets[real], added_scores)
        rec_nll = torch.zeros(targets.size(0), device=hidden.device, dtype=token_nll.dtype)
        rec_nll.index_add_(0, sentence_of_token, token_nll)
        return rec_nll, target_lengths

    def decode_step(self, token_ids: torch.Tensor, z: torch.Tensor | None, state) -> tuple[torch.Tensor, object]:
        """Next-token logits (batch, vocab) after feeding `token_ids` (batch,), and the new decoder state
        (the decoder's own kind: LSTM (h, c), a Transformer's key/value cache)."""
        hidden, state = self.decoder(token_ids.unsqueeze(1), z, state)
        logits = self.decoder.logits(hidden[:, -1])
        if self.biases_scores_with(z):
            logits = logits + self.bag_of_words.output(z).to(logits.dtype)
        return logits.float(), state
