"""Training speed of textvae against a plain PyTorch LSTM VAE of the same size, in one process.

What it measures: target tokens per second (words + one <eos> per sentence; <bos> and padding are
not counted) over --steps timed training steps, after --warmup untimed ones, for
  1. textvae, exactly as `textvae.training.train` trains: its data pipeline (length-bucketed
     batches from `iterate_batches`), TextVAE, its optimizer, word dropout, the ELBO loss with the
     KL schedule and gradient clipping of the config (the loop body mirrors train()'s inner loop);
  2. a reference: the straightforward sentence-VAE recipe, written inline below. Random batches of
     the same size from the same tokenized train split, all padded to data.max_length + 2; an
     unpacked LSTM encoder over the whole padded sequence; z sets the decoder's initial state and is
     fed at every step; logits over every position; cross_entropy(ignore_index=pad); Adam.
Both run on the same device with the same torch thread count, textvae first. Peak memory is the
process's ru_maxrss read right after the textvae part (data loading included).

The last line is machine-readable:
  tokens_per_s=N reference_tokens_per_s=N ratio=X peak_rss_mb=N      (ratio = textvae / reference)

Run from the repo root (the config's data path is relative to it):
  python benchmarks/train_speed.py --config configs/ptb.yaml --steps 200
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import time
from collections.abc import Callable, Iterator

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging as hf_logging

from textvae.config import load_config
from textvae.data import Batch, iterate_batches, padding_share
from textvae.modeling import TextVAE, build_model_config
from textvae.objectives import elbo_loss, kl_weight, word_dropout
from textvae.tokenization import special_ids
from textvae.training import build_optimizer, load_splits, seed_everything, select_device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[Batch], None], batches: Iterator[Batch], warmup: int, steps: int,
            device: torch.device) -> tuple[float, list[Batch]]:
    """Run `warmup` untimed steps, then `steps` timed ones (batch building included); tokens/s and the batches."""
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    used, start = [], time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        step(batch)
        used.append(batch)
    synchronize(device)
    elapsed = time.perf_counter() - start
    return sum(b.predicted_tokens for b in used) / elapsed, used


# ---- textvae ---------------------------------------------------------------------------------------

def textvae_batches(split, settings, special) -> Iterator[Batch]:
    """train()'s batches: bucketed and shuffled per epoch, epoch after epoch."""
    epoch = 0
    while True:
        yield from iterate_batches(split, settings.batch_size, special, shuffle=True, seed=settings.seed, epoch=epoch)
        epoch += 1


def textvae_step(model: TextVAE, optimizer, settings, special, device) -> Callable[[Batch], None]:
    """One training step, mirroring the body of train()'s inner loop (minus logging and evaluation)."""
    spared = (special["bos_token_id"], special["pad_token_id"])
    counter = {"step": 0}

    def step(batch: Batch) -> None:
        token_ids = batch.token_ids.to(device)
        decoder_inputs = word_dropout(token_ids[:, :-1], settings.word_dropout, special["unk_token_id"], spared,
                                      training=model.training)
        output = model(token_ids, batch.lengths, decoder_input_ids=decoder_inputs)
        loss = elbo_loss(output, kl_weight(counter["step"], settings), settings.free_bits)
        if not torch.isfinite(loss.loss):
            raise RuntimeError(f"textvae loss became {float(loss.loss)} at step {counter['step']}")
        optimizer.zero_grad(set_to_none=True)
        loss.loss.backward()
        if settings.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        counter["step"] += 1

    return step


# ---- the reference ---------------------------------------------------------------------------------

class ReferenceVAE(nn.Module):
    """A plain teacher-forced LSTM VAE: no packing, logits at every position."""

    def __init__(self, vocab: int, c, pad_id: int):
        super().__init__()
        self.c, self.pad_id = c, pad_id
        dirs = 2 if c.encoder_bidirectional else 1
        self.encoder_embedding = nn.Embedding(vocab, c.embedding_size, padding_idx=pad_id)
        self.encoder = nn.LSTM(c.embedding_size, c.encoder_hidden_size, c.encoder_layers, batch_first=True,
                               bidirectional=c.encoder_bidirectional)
        self.to_mean_logvar = nn.Linear(dirs * c.encoder_hidden_size, 2 * c.latent_size)
        self.z_to_state = nn.Linear(c.latent_size, 2 * c.decoder_layers * c.decoder_hidden_size)
        self.decoder_embedding = nn.Embedding(vocab, c.embedding_size, padding_idx=pad_id)
        self.decoder = nn.LSTM(c.embedding_size + c.latent_size, c.decoder_hidden_size, c.decoder_layers,
                               batch_first=True)
        self.embedding_dropout = nn.Dropout(c.embedding_dropout)
        self.output_dropout = nn.Dropout(c.decoder_dropout)
        self.output = nn.Linear(c.decoder_hidden_size, vocab)

    def forward(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        c, batch = self.c, x.size(0)
        _, (h, _) = self.encoder(self.embedding_dropout(self.encoder_embedding(x)))
        summary = h.view(c.encoder_layers, -1, batch, c.encoder_hidden_size)[-1].transpose(0, 1).reshape(batch, -1)
        mean, logvar = self.to_mean_logvar(summary).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        h0, c0 = self.z_to_state(z).view(batch, 2, c.decoder_layers, -1).permute(1, 2, 0, 3).contiguous()
        inputs = self.embedding_dropout(self.decoder_embedding(x[:, :-1]))
        inputs = torch.cat([inputs, z.unsqueeze(1).expand(-1, inputs.size(1), -1)], dim=-1)
        hidden, _ = self.decoder(inputs, (h0, c0))
        logits = self.output(self.output_dropout(hidden))
        rec = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), ignore_index=self.pad_id,
                              reduction="sum") / batch
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).sum(-1).mean()
        return rec + beta * kl


def reference_batches(token_ids: list[list[int]], batch_size: int, length: int, special, seed: int) -> Iterator[Batch]:
    """Random batches (sampled without replacement within a batch), every one padded to `length`."""
    rng = random.Random(seed)
    bos, eos, pad = special["bos_token_id"], special["eos_token_id"], special["pad_token_id"]
    while True:
        indices = rng.sample(range(len(token_ids)), min(batch_size, len(token_ids)))
        padded = torch.full((len(indices), length), pad, dtype=torch.long)
        for row, i in enumerate(indices):
            padded[row, : len(token_ids[i]) + 2] = torch.tensor([bos, *token_ids[i], eos])
        yield Batch(padded, torch.tensor([len(token_ids[i]) + 2 for i in indices]), indices)


def reference_step(model: ReferenceVAE, optimizer, settings, device) -> Callable[[Batch], None]:
    counter = {"step": 0}

    def step(batch: Batch) -> None:
        loss = model(batch.token_ids.to(device), kl_weight(counter["step"], settings))
        optimizer.zero_grad()
        loss.backward()
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        counter["step"] += 1

    return step


# ---- main ------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="textvae YAML config (default configs/ptb.yaml)")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)

    config = load_config(args.config, args.overrides)
    settings = config.train
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = select_device(settings.device)
    seed_everything(settings.seed)

    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model_config = build_model_config(config.model, len(tokenizer), special)
    if not model_config.has_latent or model_config.z_conditioning != "both":
        print("note: the reference is always a VAE with z at init and input; the config differs")
    model = TextVAE(model_config).to(device)
    model.train()
    step = textvae_step(model, build_optimizer(model, settings), settings, special, device)
    speed, used = measure(step, textvae_batches(splits["train"], settings, special), args.warmup, args.steps, device)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    textvae_params = sum(p.numel() for p in model.parameters())
    del model, step

    torch.manual_seed(settings.seed)
    length = config.data.max_length + 2
    reference = ReferenceVAE(len(tokenizer), model_config, special["pad_token_id"]).to(device)
    reference.train()
    step = reference_step(reference, torch.optim.Adam(reference.parameters(), lr=settings.lr), settings, device)
    batches = reference_batches(splits["train"].token_ids, settings.batch_size, length, special, settings.seed)
    reference_speed, reference_used = measure(step, batches, args.warmup, args.steps, device)

    print(f"config {args.config}: {len(splits['train'])} train sentences, vocab {len(tokenizer)}, "
          f"batch {settings.batch_size}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{args.steps} timed steps after {args.warmup} warm-up steps each")
    print(f"textvae:   {speed:10.0f} target tokens/s  ({textvae_params:,} parameters, bucketed batches, "
          f"padding share {padding_share(used):.1%})")
    print(f"reference: {reference_speed:10.0f} target tokens/s  "
          f"({sum(p.numel() for p in reference.parameters()):,} parameters, batches padded to {length}, "
          f"padding share {padding_share(reference_used):.1%})")
    print(f"peak RSS after the textvae part: {peak_rss_mb:.0f} MB")
    summary = {"tokens_per_s": round(speed), "reference_tokens_per_s": round(reference_speed),
               "ratio": f"{speed / reference_speed:.2f}", "peak_rss_mb": round(peak_rss_mb)}
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
