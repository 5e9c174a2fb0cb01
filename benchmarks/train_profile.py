"""Where a textvae training step spends its time, by part of the step, in each precision.

Trains as `textvae.training.train` does (length-bucketed batches, `training_step`) under torch.profiler
for --steps steps after --warmup untimed ones, and sorts every profiled operator's own (self) CPU time
into the part of the step it belongs to:
  data            building the batch and moving it to the device (all its time, Python included)
  embeddings      the embedding lookups and their dropout, forward and backward
  LSTM fwd / bwd  the encoder's and decoder's LSTMs (packing included), forward / backward
  output fwd/bwd  the vocabulary projection fused with its cross-entropy (textvae.modeling.output_loss),
                  the output dropout and the selection of real positions, forward / backward
  KL/loss         the posterior layer, reparameterisation, KL and ELBO sums, forward and backward
  clip            gradient clipping
  optimizer       zero_grad and optimizer.step
  other autograd  backward operators not traced to one of the parts above, and the autograd engine
  Python          time inside the step not spent in any operator: the interpreter, module calls, hooks
A backward operator is given to the part whose forward operator created it (the profiler's sequence
numbers). The profiler adds its own overhead, above all to the many small operators; the script also
prints the unprofiled time per step of the same model, measured just before, and the profiled one.
One thread unless train.num_threads says otherwise. Run from the repo root:
  python benchmarks/train_profile.py --config configs/ptb.yaml --steps 30
Last line: fp32_ms_per_step=X bf16_ms_per_step=X (unprofiled, each precision that ran).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from collections import defaultdict

import datasets
import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae import training
from textvae.training import sparse_gradients, step as training_steps
from textvae.training.setup import model_as_trained
from textvae.data import load_splits
from textvae.runtime import select_device
from textvae.config import load_config
from textvae.data import iterate_batches
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, build_model_config, vae
from textvae.modeling.output_loss import VocabularyOutput
from textvae.runtime import keep_freed_memory, resolve_precision
from textvae.data.tokenization import special_ids, vocabulary_size

PARTS = ("data", "embeddings", "LSTM fwd", "LSTM bwd", "output fwd", "output bwd", "KL/loss", "clip", "optimizer",
         "other autograd", "Python")
LABEL = "part::"  # prefix of the record_function regions this script opens


def region(name: str):
    return record_function(LABEL + name)


def label_modules(model: TextVAE) -> None:
    """Open a labelled profiler region around the forward of each module that belongs to a part."""
    def wrap(module: torch.nn.Module, part: str) -> None:
        def enter(_module, _inputs):
            _module._profile_region = region(part)
            _module._profile_region.__enter__()

        def leave(_module, _inputs, _output):
            _module._profile_region.__exit__(None, None, None)

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LSTM):
            wrap(module, "LSTM")
        elif isinstance(module, torch.nn.Embedding) or name.endswith("embedding_dropout") or name == "encoder.dropout":
            wrap(module, "embeddings")
        elif name == "posterior":
            wrap(module, "KL/loss")


@contextlib.contextmanager
def labelled_functions():
    """Label textvae's output layer, the ELBO sums, clipping and the optimizer calls for the profile."""
    patches = []

    def patch(owner, attribute: str, part: str) -> None:
        original = getattr(owner, attribute)

        def labelled(*args, **kwargs):
            with region(part):
                return original(*args, **kwargs)

        patches.append((owner, attribute, original))
        setattr(owner, attribute, labelled)

    patch(vae.TextVAE, "sequence_nll", "output")
    patch(VocabularyOutput, "token_nll", "output")
    patch(vae, "reparameterize", "KL/loss")
    patch(vae, "kl_per_dimension", "KL/loss")
    patch(training_steps, "elbo_loss", "KL/loss")  # looked up in step.py's namespace at call time
    patch(torch.nn.utils, "clip_grad_norm_", "clip")
    patch(sparse_gradients, "total_gradient_norm", "clip")  # with sparse embedding gradients (plain SGD; its step stays
    # the optimizer's: the clip factor goes into the learning rate, sparse_gradients.step_with_clipping)
    patch(TextVAE, "zero_grad", "optimizer")
    try:
        yield
    finally:
        for owner, attribute, original in reversed(patches):
            setattr(owner, attribute, original)


def backward_part(name: str) -> str | None:
    """The part of a backward node the sequence numbers did not place, from its name."""
    if "Rnn" in name or "Lstm" in name or "PackPadded" in name:
        return "LSTM bwd"
    if "_ProjectedCrossEntropy" in name:
        return "output bwd"
    if "Embedding" in name:
        return "embeddings"
    return None


def breakdown(events) -> dict[str, float]:
    """Microseconds of self CPU time per part, from the profiler's events (see the module docstring)."""
    def label_of(event):
        while event is not None:
            if event.name.startswith(LABEL) or event.name.startswith("Optimizer.step"):
                return event
            event = event.cpu_parent
        return None

    def part_of_label(event) -> str:
        if event.name.startswith("Optimizer.step"):
            return "optimizer"
        name = event.name[len(LABEL):]
        return {"LSTM": "LSTM fwd", "output": "output fwd"}.get(name, name)

    forward_part = {}
    for event in events:  # forward operators: their labelled region names the part
        label = label_of(event)
        if event.sequence_nr >= 0 and label is not None and not event.name.startswith("autograd::"):
            forward_part.setdefault(event.sequence_nr, part_of_label(label))
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.name.startswith(LABEL):
            part = part_of_label(event)
            totals["data" if part == "data" else "Python"] += event.self_cpu_time_total
            continue
        node = event
        while node is not None and not node.name.startswith("autograd::engine::evaluate_function"):
            node = node.cpu_parent
        if node is not None:  # inside the backward pass
            child = next((c for c in node.cpu_children if c.sequence_nr >= 0), None)
            part = forward_part.get(child.sequence_nr) if child is not None else None
            if part is not None:
                part = {"LSTM fwd": "LSTM bwd", "output fwd": "output bwd"}.get(part, part)
            part = part or backward_part(node.name) or "other autograd"
        else:
            label = label_of(event)
            part = part_of_label(label) if label is not None else "Python"
        totals[part] += event.self_cpu_time_total
    return totals


def run(config, precision: str, steps: int, warmup: int, top_operators: int = 0,
        by_shape: bool = True) -> tuple[float, float, dict[str, float]] | str:
    """(unprofiled ms/step, profiled ms/step, µs per part) for one precision, or why it could not run; with
    `top_operators`, first prints that many operators' self times, grouped by input shapes or (`by_shape` False) by name."""
    settings = config.train
    device = select_device(settings.device)
    try:
        dtype = resolve_precision(precision, device)
    except TextVAEError as error:
        return str(error)
    training.seed_everything(settings.seed)
    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model = TextVAE(build_model_config(config.model, vocabulary_size(tokenizer), special)).to(device)
    model.train()
    optimizer = training.build_optimizer(model, settings)
    runner = model_as_trained(model, settings, device, distributed=False)  # as train() runs it
    batches = itertools.chain.from_iterable(
        iterate_batches(splits["train"], settings.batch_size, special, shuffle=True, seed=settings.seed, epoch=epoch)
        for epoch in itertools.count())
    counter = itertools.count()

    def step() -> None:
        with region("data"):
            batch = next(batches)
            token_ids = batch.token_ids.to(device)
        training.training_step(runner, optimizer, token_ids, batch.lengths, next(counter), settings, special, dtype)

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    plain = (time.perf_counter() - start) / steps * 1000
    label_modules(model)
    with labelled_functions(), profile(activities=[ProfilerActivity.CPU], record_shapes=bool(top_operators)) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        profiled = (time.perf_counter() - start) / steps * 1000
    if top_operators:
        print(profiler.key_averages(group_by_input_shape=by_shape).table(sort_by="self_cpu_time_total",
                                                                          row_limit=top_operators))
    return plain, profiled, breakdown(profiler.events())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml")
    parser.add_argument("--steps", type=int, default=30, help="profiled steps (and as many unprofiled ones before)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated (default fp32,bf16)")
    parser.add_argument("--operators", type=int, default=0, metavar="N",
                        help="also print the N operators with the most self CPU time, per precision")
    parser.add_argument("--operators-by", choices=("shape", "name"), default="shape",
                        help="group --operators' table by operator and input shapes (default) or by operator name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    config = load_config(args.config, args.overrides)
    torch.set_num_threads(config.train.num_threads or 1)
    if config.train.device in ("auto", "cpu"):
        keep_freed_memory()  # as train() does
    summary = {}
    print(f"config {args.config}, {torch.get_num_threads()} torch threads, {args.steps} profiled steps after "
          f"{args.warmup} + {args.steps} unprofiled ones")
    for precision in args.precisions.split(","):
        outcome = run(config, precision, args.steps, args.warmup, args.operators, args.operators_by == "shape")
        if isinstance(outcome, str):
            print(f"{precision}: skipped: {outcome}")
            continue
        plain, profiled, parts = outcome
        total = sum(parts.values())
        print(f"\n{precision}: {plain:.1f} ms/step unprofiled, {profiled:.1f} ms/step under the profiler")
        for part in PARTS:
            share = parts.get(part, 0.0)
            print(f"  {part:15}{share / args.steps / 1000:8.1f} ms/step {share / total:7.1%}")
        summary[f"{precision}_ms_per_step"] = f"{plain:.1f}"
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
