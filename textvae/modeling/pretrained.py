"""Pretrained Hugging Face models as a sentence VAE's encoder and decoder, read from local folders.

This is Optimus (Li et al. 2020, "Optimus: Organizing Sentences via Pre-trained Modeling of a Latent
Space"): a bidirectional encoder such as BERT or RoBERTa (`AutoModel`) summarises the sentence for the
posterior, and a causal decoder such as GPT-2 (`AutoModelForCausalLM`) receives z as one extra key and value
per layer that every position attends to ('memory'), as an offset added to every input embedding ('input'),
or both (Optimus's combination). Nothing is downloaded: every folder is local (`local_files_only`).

Tokenizers. The run's ids are the decoder's own vocabulary (tokenizer.kind: pretrained) with <pad> <bos>
<eos> <unk> appended where it lacks them. The decoder keeps its pretrained embedding matrix as it is and
gives the appended ids rows of their own (`added_embeddings`, started near the mean pretrained embedding),
read at the input and, for models whose output layer is tied to their input embeddings as GPT-2's is, at the
output too. So `freeze_decoder` can fix every pretrained weight while the new tokens still learn, and
restoring the pretrained decoder is exact. The encoder usually has another vocabulary (BERT's WordPiece):
it reads each sentence back as text with the run's tokenizer and tokenizes that text with its own ([CLS]
and [SEP] included), so the rest of textvae keeps passing one stream of ids. Re-tokenizing costs a few
milliseconds a batch, next to a Transformer's forward pass; the alternative, a second id stream through
data loading, batching, sharding and every scoring path, would touch all of them.

Saving. The folders are read when a model is first built. Their Hugging Face configs are then recorded in
TextVAEConfig (pretrained_encoder_config, pretrained_decoder_config) and the weights are part of the
TextVAE's own, so `TextVAE.from_pretrained(run_dir)` rebuilds both models with `from_config`, fills them
from model.safetensors and reads the encoder's tokenizer from encoder_tokenizer.json and the run's from
tokenizer.json: the folders are not needed again. Training still reads them when it starts or resumes, and
for the decoder reset of train.pretrain_ae_steps (a fresh pretrained decoder is its folder's weights).

Decoding. The decoder's state is {"keys", "values": per-layer (batch, kv_heads, keys, head_size) tensors,
"length": tokens read}; each call wraps it in a new `DynamicCache`, so a state passed in is never changed and
`reorder_state` is a plain row selection (beam search, batched sampling).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    DynamicCache,
    PreTrainedModel,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from ..errors import TextVAEError
from ..data.model_folders import folder_tokenizer, read_folder_config, read_tokenizer_json
from .configuration import TextVAEConfig
from .dropout import Dropout
from .output_loss import VocabularyOutput
from .state import KeyValueCacheState

ENCODER_TOKENIZER = "encoder_tokenizer.json"  # the pretrained encoder's own tokenizer, in the run dir
RUN_TOKENIZER = "tokenizer.json"  # the run's tokenizer, written beside the model by training


# ---- reading folders --------------------------------------------------------------------------------

def check_encoder_kind(hf_config, folder: str) -> None:
    """An encoder must read the whole sentence: refuse left-to-right-only and encoder-decoder models."""
    kind = hf_config.model_type
    if hf_config.is_encoder_decoder:
        raise TextVAEError(f"model.pretrained_encoder: {folder} holds a {kind} encoder-decoder model; give an "
                           "encoder-only model such as BERT or RoBERTa")
    if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise TextVAEError(f"model.pretrained_encoder: {folder} holds a {kind} model, a left-to-right language "
                           "model that never reads a sentence whole; use a bidirectional encoder such as BERT or "
                           "RoBERTa (a causal model belongs in model.pretrained_decoder)")


def check_decoder_kind(hf_config, folder: str) -> None:
    """A decoder must be causal (it may not see the words it predicts) and a plain language model."""
    kind = hf_config.model_type
    if hf_config.is_encoder_decoder or kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise TextVAEError(f"model.pretrained_decoder: {folder} holds a {kind} model, which is not a causal "
                           "language model (AutoModelForCausalLM); use a left-to-right model such as GPT-2")
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not hf_config.is_decoder:
        raise TextVAEError(f"model.pretrained_decoder: {folder} holds a bidirectional {kind} model, which would "
                           "see the words it must predict; use a causal model such as GPT-2 (a bidirectional "
                           "model belongs in model.pretrained_encoder)")
    text = hf_config.get_text_config(decoder=True)
    for name in ("final_logit_softcapping", "logit_scale"):
        if getattr(text, name, None):
            raise TextVAEError(f"model.pretrained_decoder: {folder} holds a {kind} model that post-processes its "
                               f"logits ({name}), which textvae's output layer does not reproduce")


def load_folder_model(auto_class, folder: str, key: str) -> PreTrainedModel:
    """The pretrained model in `folder`, in fp32 (mixed precision comes from autocast, as for every model)."""
    try:
        return auto_class.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise TextVAEError(f"{key}: the model in {folder} cannot be loaded ({str(error).splitlines()[0][:160]}); "
                           "the folder needs config.json and its weights (model.safetensors or "
                           "pytorch_model.bin)") from None


def hf_config_from_dict(values: dict):
    """A Hugging Face config rebuilt from the dict recorded in TextVAEConfig."""
    return CONFIG_MAPPING[values["model_type"]].from_dict(values)


def pretrained_model(config: TextVAEConfig, side: str) -> tuple[PreTrainedModel, bool]:
    """The Hugging Face model of `side` ('encoder' or 'decoder'), and whether it was read from its folder.

    A config that already records the model's Hugging Face config (a saved run) rebuilds it with
    `from_config`, its weights to come from the run's model.safetensors; otherwise the folder is read, checked
    and recorded in `config`, so that the model saved with it rebuilds without the folder.
    """
    if side == "encoder":
        auto_class, check = AutoModel, check_encoder_kind
    else:
        auto_class, check = AutoModelForCausalLM, check_decoder_kind
    recorded = getattr(config, f"pretrained_{side}_config")
    if recorded:
        return auto_class.from_config(hf_config_from_dict(recorded), dtype=torch.float32), False
    key, folder = f"model.pretrained_{side}", getattr(config, f"pretrained_{side}")
    check(read_folder_config(folder, key), folder)
    model = load_folder_model(auto_class, folder, key)
    setattr(config, f"pretrained_{side}_config", model.config.to_dict())
    return model, True


# ---- the encoder ------------------------------------------------------------------------------------

class PretrainedEncoder(nn.Module):
    """A pretrained bidirectional encoder (BERT, RoBERTa, ...) that summarises a sentence for the posterior:
    the final state of the first token its tokenizer puts in front ([CLS], encoder_pooling 'summary_token',
    as Optimus does) or the mean of the final states of the real tokens ('mean').

    It reads the run's ids back as text (`reader`, the run's tokenizer) and tokenizes that text with its own
    tokenizer (`own_tokenizer`). The run's tokenizer is given by `read_with` (training; `TextVAE.from_pretrained`
    reads it from the run dir); the encoder's own comes from its folder, or from encoder_tokenizer.json.
    """

    keeps_pretrained_weights = True  # the registry leaves its weights as they were trained

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.model, from_folder = pretrained_model(config, "encoder")
        if config.freeze_encoder:
            self.model.requires_grad_(False)
        text = self.model.config.get_text_config()
        self.summary_size = text.hidden_size
        # two positions spare: models such as RoBERTa offset their positions past the padding id
        self.max_tokens = max(2, (getattr(text, "max_position_embeddings", None) or 514) - 2)
        self.pad_id = text.pad_token_id if isinstance(text.pad_token_id, int) else 0
        self.pooling = config.encoder_pooling
        self.structural_ids = {config.pad_token_id, config.bos_token_id, config.eos_token_id}
        self.reader: Tokenizer | None = None
        self.own_tokenizer: Tokenizer | None = None
        if from_folder:
            self.use_own_tokenizer(folder_tokenizer(config.pretrained_encoder, "model.pretrained_encoder"))

    def use_own_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Tokenize with `tokenizer`, cut to the model's positions, unpadded (batches are padded here)."""
        tokenizer.enable_truncation(self.max_tokens)
        tokenizer.no_padding()
        self.own_tokenizer = tokenizer

    def read_with(self, tokenizer: Tokenizer) -> None:
        """Read the run's ids back as text with `tokenizer` (the run's `tokenizers.Tokenizer`)."""
        self.reader = tokenizer

    def save_tokenizer(self, folder: Path) -> None:
        """Write the encoder's own tokenizer beside the model (`TextVAE.save_pretrained`)."""
        if self.own_tokenizer is not None:
            self.own_tokenizer.save(str(folder / ENCODER_TOKENIZER))

    def load_tokenizers(self, folder: Path) -> None:
        """Read the encoder's tokenizer and, when present, the run's tokenizer from a saved run dir."""
        if not (folder / ENCODER_TOKENIZER).is_file():
            raise TextVAEError(f"{folder} has no {ENCODER_TOKENIZER} (the pretrained encoder's tokenizer); save "
                               "the model with TextVAE.save_pretrained, which writes it")
        self.use_own_tokenizer(read_tokenizer_json(folder / ENCODER_TOKENIZER))
        if (folder / RUN_TOKENIZER).is_file():
            self.read_with(read_tokenizer_json(folder / RUN_TOKENIZER))

    def sentences(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """The text of each row: its first `length` ids without <pad> <bos> <eos>; <unk> stays visible."""
        if self.reader is None or self.own_tokenizer is None:
            raise TextVAEError("the pretrained encoder has no tokenizers: load the model with "
                               "TextVAE.from_pretrained(run_dir) or textvae.load(run_dir), or call "
                               "model.attach_tokenizer(tokenizer) with the run's tokenizer")
        rows = [[token for token in row[:length] if token not in self.structural_ids]
                for row, length in zip(token_ids.tolist(), lengths.tolist())]
        return self.reader.decode_batch(rows, skip_special_tokens=False)

    def own_ids(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The texts in the encoder's own ids, right-padded, with the attention mask of the real tokens."""
        encodings = [encoding.ids for encoding in self.own_tokenizer.encode_batch(texts)]
        width = max(1, *(len(ids) for ids in encodings))
        input_ids = torch.full((len(texts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, ids in enumerate(encodings):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        return input_ids.to(device), mask.to(device)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Summaries (batch, summary_size) of right-padded run ids `token_ids` with true `lengths`."""
        input_ids, mask = self.own_ids(self.sentences(token_ids, lengths), token_ids.device)
        states = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        if self.pooling == "summary_token":
            return states[:, 0]
        real = mask.unsqueeze(-1).to(states.dtype)
        return (states * real).sum(1) / real.sum(1).clamp(min=1)


# ---- the decoder ------------------------------------------------------------------------------------

class PretrainedDecoder(KeyValueCacheState, VocabularyOutput):
    """A pretrained causal language model (GPT-2, ...) conditioned on z as in Optimus (Li et al. 2020).

    'memory' maps z through one linear layer to a key and a value for every layer and key/value head,
    placed in the cache before the sentence, so every position attends to them (the pretrained attention is
    unchanged; positions still start at 0 for the first token); 'input' adds a linear map of z to every input
    embedding; 'both' does the two. Without a latent (the LM baseline) it is the plain pretrained language
    model. Ids past the pretrained vocabulary (the appended special tokens) read rows of `added_embeddings`.
    """

    keeps_pretrained_weights = True

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.model, from_folder = pretrained_model(config, "decoder")
        text = self.model.config.get_text_config(decoder=True)
        self.width = text.hidden_size
        self.layers = text.num_hidden_layers
        self.kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        self.head_size = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.max_positions = getattr(text, "max_position_embeddings", None)
        self.vocab_size = config.vocab_size
        conditioning = config.z_conditioning if config.has_latent else None
        check_memory_layers(text, conditioning)
        self.z_to_input = nn.Linear(config.latent_size, self.width) if conditioning in ("input", "both") else None
        self.z_to_memory = (nn.Linear(config.latent_size, self.layers * 2 * self.kv_heads * self.head_size)
                            if conditioning in ("memory", "both") else None)
        self.output_dropout = Dropout(config.decoder_dropout)
        self.add_token_rows(max(0, config.vocab_size - self.pretrained_vocab), from_folder)
        # the TextVAE's post_init collects tied weights from its children: GPT-2's output layer is its input embeddings
        self.all_tied_weights_keys = {f"model.{target}": f"model.{source}"
                                      for target, source in (self.model.all_tied_weights_keys or {}).items()}
        if config.freeze_decoder:
            self.model.requires_grad_(False)

    @property
    def head(self) -> nn.Module:
        """The pretrained output layer (the LM head)."""
        return self.model.get_output_embeddings()

    @property
    def pretrained_vocab(self) -> int:
        return self.model.get_input_embeddings().num_embeddings

    @property
    def tied(self) -> bool:
        """Whether the output layer is the input embeddings (GPT-2): read from the model's tying rules, since
        while a saved run loads the two are not yet tied."""
        return bool(self.model.all_tied_weights_keys)

    def add_token_rows(self, count: int, from_folder: bool) -> None:
        """Rows for the `count` ids past the pretrained vocabulary: input embeddings, plus output rows (and
        biases) where the model's output layer is not its input embeddings. Fresh rows start at the mean
        pretrained row plus a little noise, so a new token begins as an average word."""
        table = self.model.get_input_embeddings().weight
        self.added_embeddings = nn.Parameter(near_mean(table, count, from_folder))
        self.added_output = None if self.tied else nn.Parameter(near_mean(self.head.weight, count, from_folder))
        bias = getattr(self.head, "bias", None)
        self.added_bias = None
        if bias is not None:
            start = bias.detach().mean() if from_folder else 0.0
            self.added_bias = nn.Parameter(torch.full((count,), float(start), dtype=bias.dtype, device=bias.device))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of run ids: pretrained rows, and `added_embeddings` past the pretrained vocabulary."""
        table = self.model.get_input_embeddings()
        if self.added_embeddings.size(0) == 0:
            return table(input_ids)
        added = input_ids >= self.pretrained_vocab
        embedded = table(input_ids.masked_fill(added, 0))
        extra = self.added_embeddings[(input_ids - self.pretrained_vocab).clamp(min=0)].to(embedded.dtype)
        return torch.where(added.unsqueeze(-1), extra, embedded)

    def output_weight(self) -> torch.Tensor:
        """(vocab, width): the pretrained output rows the run's vocabulary uses, then the added rows."""
        weight = self.head.weight[: self.vocab_size]
        if self.added_embeddings.size(0) == 0:
            return weight
        added = self.added_embeddings if self.added_output is None else self.added_output
        return torch.cat([weight, added.to(weight.dtype)])

    def output_bias(self) -> torch.Tensor | None:
        """(vocab,): the pretrained head's bias rows, then the added rows; None when the head has no bias."""
        bias = getattr(self.head, "bias", None)
        if bias is None:
            return None
        return torch.cat([bias[: self.vocab_size], self.added_bias.to(bias.dtype)])

    def memory_cache(self, z: torch.Tensor | None) -> DynamicCache | None:
        """A cache holding, in every layer, the key and value that z contributes (None without 'memory')."""
        if self.z_to_memory is None or z is None:
            return None
        slots = self.z_to_memory(z).view(z.size(0), self.layers, 2, self.kv_heads, 1, self.head_size)
        return DynamicCache([(slots[:, layer, 0], slots[:, layer, 1]) for layer in range(self.layers)],
                            config=self.model.config)

    def forward(self, input_ids: torch.Tensor, z: torch.Tensor | None,
                state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Hidden states (batch, steps, width) for teacher-forced `input_ids`; pass `state` to continue."""
        start = 0 if state is None else state["length"]
        batch, steps = input_ids.shape
        if self.max_positions and start + steps > self.max_positions:
            raise TextVAEError(f"a sentence of {start + steps} tokens is longer than the pretrained decoder's "
                               f"{self.max_positions} positions; shorten it (data.max_length, --max-length)")
        embedded = self.embed(input_ids)
        if self.z_to_input is not None:
            embedded = embedded + self.z_to_input(z).to(embedded.dtype).unsqueeze(1)
        if state is None:
            cache = self.memory_cache(z)
        else:
            cache = DynamicCache(list(zip(state["keys"], state["values"])), config=self.model.config)
        positions = torch.arange(start, start + steps, device=input_ids.device).unsqueeze(0).expand(batch, -1)
        output = self.model.base_model(inputs_embeds=embedded, cache=cache, position_ids=positions, use_cache=True)
        layers = output.cache.layers
        return output.last_hidden_state, {"keys": tuple(layer.keys for layer in layers),
                                          "values": tuple(layer.values for layer in layers),
                                          "length": start + steps}


def check_memory_layers(text_config, conditioning: str | None) -> None:
    """'memory' needs every layer to keep all its keys: refuse sliding-window or linear-attention layers."""
    layer_types = getattr(text_config, "layer_types", None) or []
    if conditioning in ("memory", "both") and any(kind != "full_attention" for kind in layer_types):
        kinds = ", ".join(sorted(set(layer_types)))
        raise TextVAEError(f"model.z_conditioning: '{conditioning}' puts z in every layer's keys, but this "
                           f"{text_config.model_type} decoder has layers that drop old keys ({kinds}); "
                           "use z_conditioning: input")


def near_mean(table: torch.Tensor, count: int, from_folder: bool) -> torch.Tensor:
    """`count` rows at the mean row of `table` plus noise of 1% of its spread (zeros for a saved run, whose
    rows are about to be loaded)."""
    if not from_folder:
        return torch.zeros(count, table.size(1), dtype=table.dtype, device=table.device)
    table = table.detach()
    noise = torch.randn(count, table.size(1), dtype=table.dtype, device=table.device)
    return table.mean(0) + 0.01 * table.std(0) * noise
