"""Training speed of textvae against a plain PyTorch LSTM VAE of the same size, in one process.

Measures target tokens per second (words + one <eos> per sentence; <bos> and padding not counted)
over --steps timed training steps after --warmup untimed ones, same device and torch thread count:
  1. textvae, as `textvae.training.train` trains: its data pipeline (length-bucketed batches),
     TextVAE, optimizer and its own update step (`training_step`: word dropout, ELBO loss with the
     KL schedule, gradient clipping);
  2. then a reference, the straightforward sentence-VAE recipe written inline below: random batches
     of the same size from the same tokenized train split, all padded to data.max_length + 2, an
     unpacked LSTM encoder, z into the decoder's initial state and every input, logits at every
     position, cross_entropy(ignore_index=pad), Adam.
Peak memory: ru_maxrss right after the textvae part (data loading included). Last line:
  tokens_per_s=N reference_tokens_per_s=N ratio=X peak_rss_mb=N      (ratio = textvae / reference)
Run from the repo root (the config's data path is relative to it):
  python benchmarks/train_speed.py --config configs/ptb.yaml --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import time
from collections.abc import Callable, Iterator

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from textvae.config import load_config
from textvae.data import Batch, iterate_batches, padding_share
from textvae.modeling import TextVAE, build_model_config
from textvae.objectives import kl_weight
from textvae.tokenization import special_ids, vocabulary_size
from textvae.training import (
    build_optimizer,
    load_splits,
    seed_everything,
    select_device,
    training_step,
)


def measure(step: Callable[[Batch], None], batches: Iterator[Batch], warmup: int, steps: int,
            device: torch.device) -> tuple[float, list[Batch]]:
    """Run `warmup` untimed steps, then `steps` timed ones (batch building included); tokens/s and the batches."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for _ in range(warmup):
        step(next(batches))
    sync()
    used, start = [], time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        step(batch)
        used.append(batch)
    sync()
    return sum(b.predicted_tokens for b in used) / (time.perf_counter() - start), used


# ---- textvae ---------------------------------------------------------------------------------------

def textvae_step(model: TextVAE, optimizer, settings, special, device) -> Callable[[Batch], None]:
    """train()'s own update (textvae.training.training_step), minus logging and evaluation."""
    counter = itertools.count()

    def step(batch: Batch) -> None:
        training_step(model, optimizer, batch.token_ids.to(device), batch.lengths, next(counter), settings, special)

    return step


# ---- the reference ---------------------------------------------------------------------------------

class ReferenceVAE(nn.Module):
    """A plain teacher-forced LSTM VAE: no packing, logits at every position."""

    def __init__(self, vocab: int, c, pad_id: int):
        super().__init__()
        self.c, self.pad_id = c, pad_id
        self.encoder_embedding = nn.Embedding(vocab, c.embedding_size, padding_idx=pad_id)
        self.encoder = nn.LSTM(c.embedding_size, c.encoder_hidden_size, c.encoder_layers, batch_first=True,
                               bidirectional=c.encoder_bidirectional)
        self.to_mean_logvar = nn.Linear((1 + c.encoder_bidirectional) * c.encoder_hidden_size, 2 * c.latent_size)
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
    counter = itertools.count()

    def step(batch: Batch) -> None:
        loss = model(batch.token_ids.to(device), kl_weight(next(counter), settings))
        optimizer.zero_grad()
        loss.backward()
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="textvae YAML config (default configs/ptb.yaml)")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    datasets.disable_progress_bars()

    config = load_config(args.config, args.overrides)
    settings = config.train
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = select_device(settings.device)
    seed_everything(settings.seed)

    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model_config = build_model_config(config.model, vocabulary_size(tokenizer), special)
    if not model_config.has_latent or model_config.z_conditioning != "both":
        print("note: the reference is always a VAE with z at init and input; the config differs")
    model = TextVAE(model_config).to(device)
    model.train()
    step = textvae_step(model, build_optimizer(model, settings), settings, special, device)
    batches = itertools.chain.from_iterable(  # train()'s bucketed, shuffled batches, epoch after epoch
        iterate_batches(splits["train"], settings.batch_size, special, shuffle=True, seed=settings.seed, epoch=epoch)
        for epoch in itertools.count())
    speed, used = measure(step, batches, args.warmup, args.steps, device)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    torch.manual_seed(settings.seed)
    length = config.data.max_length + 2
    reference = ReferenceVAE(vocabulary_size(tokenizer), model_config, special["pad_token_id"]).to(device)
    step = reference_step(reference, torch.optim.Adam(reference.parameters(), lr=settings.lr), settings, device)
    batches = reference_batches(splits["train"].token_ids, settings.batch_size, length, special, settings.seed)
    reference_speed, reference_used = measure(step, batches, args.warmup, args.steps, device)

    print(f"config {args.config}: {len(splits['train'])} train sentences, vocab {len(tokenizer)}, batch "
          f"{settings.batch_size}, device {device}, {torch.get_num_threads()} torch threads, {args.steps} timed "
          f"steps after {args.warmup} warm-up steps each")
    rows = {"textvae": (model, speed, used), "reference": (reference, reference_speed, reference_used)}
    for name, (net, tokens_per_s, timed) in rows.items():
        print(f"{name + ':':11}{tokens_per_s:10.0f} target tokens/s, {sum(p.numel() for p in net.parameters()):,} "
              f"parameters, padding share {padding_share(timed):.1%}")
    print(f"(textvae: bucketed batches; reference: random batches padded to {length})\n"
          f"peak RSS after the textvae part: {peak_rss_mb:.0f} MB")
    summary = {"tokens_per_s": round(speed), "reference_tokens_per_s": round(reference_speed),
               "ratio": f"{speed / reference_speed:.2f}", "peak_rss_mb": round(peak_rss_mb)}
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
