"""Speed of aggressive training's encoder-only update (He et al. 2019), against the same update computing every
gradient and dropping the decoder's, in one run.

Aggressive inference-network training runs up to train.aggressive_max_inner_steps encoder-only updates before
each joint step, so this update is nearly all of its cost. `training_step(..., parameters=encoder)` asks
autograd for the encoder's gradients alone, which skips the decoder's weight gradients (the vocabulary
projection's above all). The baseline is the same call on the model behind a DDP-like `.module` wrapper,
the path distributed training takes: every gradient computed, then the decoder's dropped. Both produce the
same update (tests/test_collapse.py checks it bit for bit). The two alternate in rounds of --steps updates on
the same batches, and the ratio is the median of the rounds' ratios, so load on the machine hits both alike.
Last line: encoder_steps_per_s=N baseline_steps_per_s=N ratio=X. Run from the repo root:
  python benchmarks/aggressive_speed.py --config configs/ptb.yaml --set train.num_threads=1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import datasets
import torch
from torch import nn

from textvae.training.collapse import encoder_parameters
from textvae.config import load_config
from textvae.data import iterate_batches
from textvae.modeling import TextVAE, build_model_config
from textvae.runtime import precision_name, resolve_precision
from textvae.data.tokenization import special_ids, vocabulary_size
from textvae.training import build_optimizer, seed_everything, training_step
from textvae.data.loading import load_splits
from textvae.runtime import select_device


class AllGradients(nn.Module):
    """The model behind a `.module` attribute, as DistributedDataParallel holds it: training_step then
    computes every gradient and drops those it does not update."""

    def __init__(self, model: TextVAE):
        super().__init__()
        self.module = model

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="textvae YAML config (default configs/ptb.yaml)")
    parser.add_argument("--steps", type=int, default=20, help="encoder updates per round (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each variant, alternating (default 5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1")
    datasets.disable_progress_bars()
    config = load_config(args.config, args.overrides)
    settings = config.train
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = select_device(settings.device)
    dtype = resolve_precision(settings.precision, device)
    seed_everything(settings.seed)
    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model = TextVAE(build_model_config(config.model, vocabulary_size(tokenizer), special)).to(device).train()
    optimizer = build_optimizer(encoder_parameters(model), settings)
    batches = list(itertools.islice(iterate_batches(splits["train"], settings.batch_size, special, shuffle=True,
                                                    seed=settings.seed), args.steps))
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    def round_seconds(runner: nn.Module) -> float:
        sync()
        start = time.perf_counter()
        for step, batch in enumerate(batches):
            training_step(runner, optimizer, batch.token_ids.to(device), batch.lengths, step, settings, special,
                          dtype, parameters=encoder_parameters(model))
        sync()
        return time.perf_counter() - start

    variants = {"encoder gradients only": model, "all gradients, decoder's dropped": AllGradients(model)}
    for runner in variants.values():  # warm-up, untimed
        round_seconds(runner)
    seconds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, runner in variants.items():
            seconds[name].append(round_seconds(runner))
    fast, slow = seconds.values()
    ratio = statistics.median(base / own for own, base in zip(fast, slow))
    print(f"config {args.config}: batch {settings.batch_size}, {vocabulary_size(tokenizer)} words, device {device}, "
          f"{torch.get_num_threads()} torch threads, {precision_name(dtype)}; {args.rounds} alternating rounds of "
          f"{args.steps} encoder-only updates each")
    for name, times in seconds.items():
        print(f"{name:34} {args.steps / statistics.median(times):7.2f} updates/s (median round)")
    print(f"encoder_steps_per_s={args.steps / statistics.median(fast):.2f} "
          f"baseline_steps_per_s={args.steps / statistics.median(slow):.2f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
