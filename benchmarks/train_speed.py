"""Training speed of textvae against a plain PyTorch LSTM VAE of the same size, in one run.

Measures target tokens per second (words + one <eos> per sentence; <bos> and padding not counted)
over --steps timed training steps after --warmup untimed ones, same device and torch thread count:
  * reference: the straightforward sentence-VAE loop written inline below, as a user would write it
    in a plain script: random batches from the same tokenized train split, each padded to its longest
    sentence, an unpacked LSTM encoder, z into the decoder's initial state and every input, logits at
    every position, cross_entropy(ignore_index=pad), torch.optim.Adam with its defaults;
  * textvae in each precision (fp32, bf16, fp16; --precision P for one; --set train.compile=true
    adds torch.compile, compiled during the untimed warm-up), exactly as
    `textvae.training.train` trains: length-bucketed batches, TextVAE with its fused output loss,
    fused Adam, the allocator setting of textvae.runtime, `training_step` (word dropout, ELBO loss with
    the KL schedule, gradient clipping, autocast). A precision this hardware cannot run is reported
    as skipped, with the reason.
Each variant runs in a fresh child process, so allocator settings, caches and peak memory
(ru_maxrss of that process, data loading included) never leak from one into another. Last line:
  tokens_per_s=N reference_tokens_per_s=N ratio=X peak_rss_mb=N [precision=P padding_share=X]
for the default precision (auto) or the one --precision names. Run from the repo root:
  python benchmarks/train_speed.py --config configs/sentence_vae_ptb.yaml --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import datasets
import torch
import torch.nn.functional as F
from torch import nn

from textvae.config import load_config
from textvae.data import Batch, iterate_batches, padding_share
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, build_model_config
from textvae.objectives import kl_weight
from textvae.runtime import PRECISIONS, keep_freed_memory, precision_name, resolve_precision
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

def textvae_step(model: TextVAE, optimizer, settings, special, device, dtype) -> Callable[[Batch], None]:
    """train()'s own update (textvae.training.training_step), minus logging and evaluation."""
    counter = itertools.count()
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step(batch: Batch) -> None:
        training_step(model, optimizer, batch.token_ids.to(device), batch.lengths, next(counter), settings, special,
                      dtype, scaler)

    return step


# ---- the reference ---------------------------------------------------------------------------------

class ReferenceVAE(nn.Module):
    """A plain teacher-forced LSTM VAE: no packing, logits at every position, the loss ignoring padding."""

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
        self.encoder_dropout = nn.Dropout(c.encoder_embedding_dropout)
        self.embedding_dropout = nn.Dropout(c.embedding_dropout)
        self.output_dropout = nn.Dropout(c.decoder_dropout)
        self.output = nn.Linear(c.decoder_hidden_size, vocab)

    def forward(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        c, batch = self.c, x.size(0)
        _, (h, _) = self.encoder(self.encoder_dropout(self.encoder_embedding(x)))
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


def reference_batches(token_ids: list[list[int]], batch_size: int, special, seed: int) -> Iterator[Batch]:
    """Random batches (sampled without replacement within a batch), each padded to its longest sentence."""
    rng = random.Random(seed)
    bos, eos, pad = special["bos_token_id"], special["eos_token_id"], special["pad_token_id"]
    while True:
        indices = rng.sample(range(len(token_ids)), min(batch_size, len(token_ids)))
        length = max(len(token_ids[i]) for i in indices) + 2
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


def measure_variant(args: argparse.Namespace) -> dict:
    """One variant ('reference' or a precision name) in this process; its measurements as a dict."""
    datasets.disable_progress_bars()
    config = load_config(args.config, args.overrides)
    settings = config.train
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = select_device(settings.device)
    report = {"variant": args.variant, "device": str(device), "threads": torch.get_num_threads()}
    if args.variant != "reference":
        try:
            dtype = resolve_precision(args.variant, device)
        except TextVAEError as error:
            return {**report, "skipped": str(error)}
        keep_freed_memory()  # as train() does
        report["precision"] = precision_name(dtype)
    seed_everything(settings.seed)
    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model_config = build_model_config(config.model, vocabulary_size(tokenizer), special)
    if args.variant == "reference":
        model = ReferenceVAE(vocabulary_size(tokenizer), model_config, special["pad_token_id"]).to(device)
        step = reference_step(model, torch.optim.Adam(model.parameters(), lr=settings.lr), settings, device)
        batches = reference_batches(splits["train"].token_ids, settings.batch_size, special, settings.seed)
    else:
        model = TextVAE(model_config).to(device)
        runner = torch.compile(model) if settings.compile else model  # as train() does with train.compile
        step = textvae_step(runner, build_optimizer(model, settings), settings, special, device, dtype)
        batches = itertools.chain.from_iterable(  # train()'s bucketed, shuffled batches, epoch after epoch
            iterate_batches(splits["train"], settings.batch_size, special, shuffle=True, seed=settings.seed,
                            epoch=epoch) for epoch in itertools.count())
    model.train()
    speed, used = measure(step, batches, args.warmup, args.steps, device)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {**report, "tokens_per_s": speed, "padding_share": padding_share(used), "peak_mb": peak / 2**20,
            "parameters": sum(p.numel() for p in model.parameters()), "train_sentences": len(splits["train"]),
            "vocab": len(tokenizer), "batch_size": settings.batch_size}


def run_child(args: argparse.Namespace, variant: str) -> dict:
    """measure_variant in a fresh Python process."""
    command = [sys.executable, __file__, "--config", args.config, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--variant", variant]
    for override in args.overrides:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"train_speed: the {variant} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="textvae YAML config (default configs/ptb.yaml)")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing (default 10)")
    parser.add_argument("--precision", help="measure textvae in this precision only (fp32 | bf16 | fp16 | auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    if args.variant:
        print(json.dumps(measure_variant(args)))
        return

    device = select_device(load_config(args.config, args.overrides).train.device)
    auto = "bf16" if resolve_precision("auto", device) == torch.bfloat16 else "fp32"
    chosen_name = auto if args.precision in (None, "auto") else args.precision
    reference = run_child(args, "reference")
    runs = {name: run_child(args, name) for name in ([chosen_name] if args.precision else PRECISIONS)}
    print(f"config {args.config}: {reference['train_sentences']} train sentences, vocab {reference['vocab']}, "
          f"batch {reference['batch_size']}, device {reference['device']}, {reference['threads']} torch threads, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps each, every variant in its own process")
    rows = {"reference": reference} | {f"textvae {name}" + (" (auto)" if name == auto else ""): run
                                       for name, run in runs.items()}
    for name, run in rows.items():
        if "skipped" in run:
            print(f"{name:20} skipped: {run['skipped']}")
            continue
        ratio = run["tokens_per_s"] / reference["tokens_per_s"]
        print(f"{name:20}{run['tokens_per_s']:9.0f} target tokens/s  x{ratio:.2f} of reference  "
              f"padding {run['padding_share']:6.1%}  peak {run['peak_mb']:6.0f} MB  {run['parameters']:,} parameters"
              )
    chosen = runs[chosen_name]
    if "skipped" in chosen:
        sys.exit(f"train_speed: precision {args.precision} cannot run here: {chosen['skipped']}")
    summary = {"tokens_per_s": round(chosen["tokens_per_s"]), "reference_tokens_per_s": round(reference["tokens_per_s"]),
               "ratio": f"{chosen['tokens_per_s'] / reference['tokens_per_s']:.2f}", "peak_rss_mb": round(chosen["peak_mb"])}
    if args.precision:
        summary |= {"precision": chosen["precision"], "padding_share": f"{chosen['padding_share']:.4f}"}
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
