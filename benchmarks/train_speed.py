"""Training speed of textvae against two plain PyTorch LSTM VAEs of the same size, in one run.

Measures target tokens per second (words + one <eos> per sentence; <bos> and padding not counted)
over --steps timed training steps after --warmup untimed ones, same device, data, batch size and torch
thread count. The default warm-up (300 steps) lets the heap reach its high-water mark first: until the
largest batches have been seen, a new larger one page-faults fresh memory in (several times the step's
arithmetic on a small VM), which is no part of a training's steady speed; each row shows the minor page
faults per timed step, so a warm-up too short shows (benchmarks/RESULTS.md):
  * reference (the strong baseline, the summary's `ratio`): what the published PTB code of He et al. 2019
    and Li et al. 2019 does, written here: every batch holds sentences of one length (sentences grouped
    by length, cut into batches of at most batch_size, the batches shuffled: no padding at all), a
    1-layer LSTM encoder whose last state gives mean and log-variance, z mapped to the decoder's initial
    cell state (hidden state its tanh) and concatenated to every decoder input, dropout on the decoder's
    inputs and outputs, full softmax cross-entropy at every position of the equal-length batch, plain SGD
    at learning rate 1.0 with gradients clipped to norm 5, the published uniform initialisation. Sizes
    and dropout come from the config (configs/ptb.yaml: 256/256/32, 0.5 in and out). It runs under
    textvae's allocator setting (textvae.runtime.keep_freed_memory: one mallopt call any script can make;
    under glibc's default its >32 MB logits are mapped and unmapped every step), so the baseline is the
    strongest we can write, not the published code as it ships. It runs in fp32 (the published code has
    no mixed precision); when textvae runs in bf16 or fp16 the same loop under that autocast is measured
    too (`same_precision_ratio`);
  * plain: the straightforward loop a user writes in a script: random batches from the same split, each
    padded to its longest sentence (~51% padding), logits at every position,
    cross_entropy(ignore_index=pad), torch.optim.Adam with its defaults (`plain_ratio`);
  * textvae in each precision (fp32, bf16; fp16 only when --precision fp16 asks for it, never by default
    on a CPU; --precision P for one; --set train.compile=true adds torch.compile, compiled during the
    untimed warm-up), exactly as `textvae.training.train` trains: length-bucketed batches, TextVAE with
    its fused output loss, the configured optimizer, the allocator setting of textvae.runtime,
    `training_step` (word dropout, ELBO loss with the KL schedule, gradient clipping, autocast).
  * with --floor, the arithmetic floor in fp32 and in textvae's precision (`floor fp32`, benchmarks/step_floor.py):
    only the two LSTMs forward and backward and the vocabulary layer's three products, on the reference's
    batches; its ratio to the reference (`floor_ratio`, `floor_ratio_fp32`) bounds what any implementation
    doing that arithmetic with torch's kernels can reach against the reference on this machine;
  * with --processes N, textvae also as `torchrun --nproc_per_node N` trains it (`textvae fp32 ×N procs`):
    DistributedDataParallel over gloo, each process on its share of every global batch with the machine's
    threads split among them (one each on 2 cores), the update the same as one process's on the whole batch
    (textvae.training.distributed); tokens/s counts the global batches. Pass --processes-reference too to run
    the reference the same way (plain DDP, each process on its share of the rows of every batch), so the gain
    of parallelising is not credited to textvae alone.
A precision this hardware cannot run is reported as skipped, with the reason: refused by the capability
check, or failing at run time (an exception, or the child process dying, e.g. inside oneDNN's LSTM).
Each variant runs in a fresh child process (with --rounds R, R times, the variants taking turns, and the
median run reported), so allocator settings, caches and peak memory
(ru_maxrss of that process, data loading included) never leak from one into another. Last line:
  tokens_per_s=N reference_tokens_per_s=N ratio=X plain_tokens_per_s=N plain_ratio=X peak_rss_mb=N
  reference_peak_rss_mb=N [same_precision_ratio=X] [floor_ratio=X floor_ratio_fp32=X] [precision=P padding_share=X]
for the default precision (auto) or the one --precision names. Run from the repo root:
  python benchmarks/train_speed.py --config configs/ptb.yaml --steps 200
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable, Iterator

import datasets
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's textvae, not another install

from textvae.config import load_config
from textvae.data import Batch, iterate_batches, padding_share
from textvae.errors import TextVAEError
from textvae.modeling import TextVAE, build_model_config
from textvae.training.objectives import kl_weight
from textvae.runtime import PRECISIONS, autocast, keep_freed_memory, precision_name, resolve_precision
from textvae.data.tokenization import special_ids, vocabulary_size
from textvae.training import build_optimizer, seed_everything, training_step
from textvae.training.distributed import Workers, setup as setup_workers, teardown
from textvae.training.setup import model_as_trained
from textvae.data.loading import load_splits
from textvae.runtime import select_device

from step_floor import FloorModel, floor_step  # benchmarks/ is the script's own folder on sys.path


def measure(step: Callable[[Batch], None], batches: Iterator[Batch], warmup: int, steps: int,
            device: torch.device) -> tuple[float, float, list[Batch]]:
    """Run `warmup` untimed steps, then `steps` timed ones (batch building included); tokens/s, minor page
    faults per timed step, and the batches."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for _ in range(warmup):
        step(next(batches))
    sync()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    used, start = [], time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        step(batch)
        used.append(batch)
    sync()
    speed = sum(b.predicted_tokens for b in used) / (time.perf_counter() - start)
    return speed, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps, used


# ---- textvae ---------------------------------------------------------------------------------------

def textvae_step(model: TextVAE, optimizer, settings, special, device, dtype,
                 workers: Workers | None = None) -> Callable[[Batch], None]:
    """train()'s own update (textvae.training.training_step), minus logging and evaluation; with several
    `workers` (DDP), this process's rows of each global batch, with the draws all processes share."""
    counter = itertools.count()
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    workers = workers or Workers()
    draws = torch.Generator(device=device)
    draws.manual_seed(settings.seed + 1)

    def step(batch: Batch) -> None:
        training_step(model, optimizer, batch.token_ids.to(device), batch.lengths, next(counter), settings, special,
                      dtype, scaler, draws, workers.rows(len(batch.indices)), workers.world_size)

    return step


# ---- the plain loop ---------------------------------------------------------------------------------

class PlainVAE(nn.Module):
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


def plain_batches(token_ids: list[list[int]], batch_size: int, special, seed: int) -> Iterator[Batch]:
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


def plain_step(model: PlainVAE, optimizer, settings, device) -> Callable[[Batch], None]:
    counter = itertools.count()

    def step(batch: Batch) -> None:
        loss = model(batch.token_ids.to(device), kl_weight(next(counter), settings))
        optimizer.zero_grad()
        loss.backward()
        if settings.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()

    return step


# ---- the strong reference: what the published research code does -----------------------------------

PUBLISHED_LR, PUBLISHED_CLIP = 1.0, 5.0  # plain SGD at 1.0, gradient norm clipped to 5
PUBLISHED_INIT, PUBLISHED_EMBEDDING_INIT = 0.01, 0.1  # U(-0.01, 0.01) weights, U(-0.1, 0.1) embeddings


class ResearchVAE(nn.Module):
    """The published PTB LSTM VAE, written here: the encoder's last hidden state gives mean and log-variance;
    z sets the decoder's initial cell state through a linear map (its tanh the hidden state) and is fed with
    every input; dropout on decoder inputs and outputs; full softmax cross-entropy at every position."""

    def __init__(self, vocab: int, c):
        super().__init__()
        self.encoder_embedding = nn.Embedding(vocab, c.embedding_size)
        self.encoder = nn.LSTM(c.embedding_size, c.encoder_hidden_size, batch_first=True)
        self.to_mean_logvar = nn.Linear(c.encoder_hidden_size, 2 * c.latent_size)
        self.decoder_embedding = nn.Embedding(vocab, c.embedding_size)
        self.decoder = nn.LSTM(c.embedding_size + c.latent_size, c.decoder_hidden_size, batch_first=True)
        self.z_to_cell = nn.Linear(c.latent_size, c.decoder_hidden_size, bias=False)
        self.dropout_in = nn.Dropout(c.embedding_dropout)
        self.dropout_out = nn.Dropout(c.decoder_dropout)
        self.output = nn.Linear(c.decoder_hidden_size, vocab)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-PUBLISHED_INIT, PUBLISHED_INIT)
            for embedding in (self.encoder_embedding, self.decoder_embedding):
                embedding.weight.uniform_(-PUBLISHED_EMBEDDING_INIT, PUBLISHED_EMBEDDING_INIT)

    def forward(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """The batch-mean loss rec + beta KL of sentences x = <bos> w1 .. wn <eos>, all of one length."""
        _, (last, _) = self.encoder(self.encoder_embedding(x))
        mean, logvar = self.to_mean_logvar(last[-1]).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        cell = self.z_to_cell(z).unsqueeze(0)
        inputs = self.dropout_in(self.decoder_embedding(x[:, :-1]))
        inputs = torch.cat([inputs, z.unsqueeze(1).expand(-1, inputs.size(1), -1).to(inputs.dtype)], dim=-1)
        hidden, _ = self.decoder(inputs, (torch.tanh(cell), cell))
        logits = self.output(self.dropout_out(hidden))
        rec = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="sum") / x.size(0)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).sum(-1).mean()
        return rec + beta * kl


def equal_length_batches(token_ids: list[list[int]], batch_size: int, special, seed: int) -> Iterator[Batch]:
    """The published batching: sentences grouped by length, each group cut into batches of at most
    `batch_size` (so a batch is never padded), the list of batches shuffled every epoch."""
    bos, eos = special["bos_token_id"], special["eos_token_id"]
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(token_ids):
        by_length.setdefault(len(ids), []).append(index)
    tensors = []
    for length in sorted(by_length):
        group = by_length[length]
        for start in range(0, len(group), batch_size):
            indices = group[start: start + batch_size]
            rows = torch.tensor([[bos, *token_ids[i], eos] for i in indices])
            tensors.append(Batch(rows, torch.full((len(indices),), length + 2), indices))
    rng = random.Random(seed)
    while True:
        rng.shuffle(tensors)
        yield from tensors


def research_step(model: ResearchVAE, optimizer, settings, device, dtype,
                  workers: Workers | None = None) -> Callable[[Batch], None]:
    """The published update; with several `workers` (DDP), each process's loss is its rows' mean (DDP averages)."""
    counter = itertools.count()
    workers = workers or Workers()

    def step(batch: Batch) -> None:
        rows = workers.rows(len(batch.indices))
        token_ids = batch.token_ids if rows is None else batch.token_ids[rows]
        with autocast(device, dtype):
            loss = model(token_ids.to(device), kl_weight(next(counter), settings))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), PUBLISHED_CLIP)
        optimizer.step()

    return step


# ---- one variant per process -----------------------------------------------------------------------

def measure_variant(args: argparse.Namespace) -> dict:
    """One variant ('plain', 'reference-<precision>', 'floor-<precision>' or a textvae precision name) in this
    process; its measurements as a dict. A precision that fails here, at the capability check or at run time, comes
    back as {'skipped': reason}."""
    datasets.disable_progress_bars()
    config = load_config(args.config, args.overrides)
    settings = config.train
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    device = select_device(settings.device)
    workers, device = setup_workers(device)  # under torch.distributed.run (--processes): DDP across them
    if workers.distributed:
        torch.set_num_threads(args.threads_per_process)
    report = {"variant": args.variant, "device": str(device), "threads": torch.get_num_threads(),
              "processes": workers.world_size}
    kind, _, precision = args.variant.rpartition("-") if "-" in args.variant else ("", "", args.variant)
    dtype = torch.float32
    if args.variant != "plain":
        try:
            dtype = resolve_precision(precision, device)
        except TextVAEError as error:
            return {**report, "skipped": str(error)}
        report["precision"] = precision_name(dtype)
    if args.variant != "plain":  # textvae, as train() does, and the reference, to make it the strongest
        keep_freed_memory()
    seed_everything(settings.seed)
    tokenizer, splits = load_splits(config, None)
    special = special_ids(tokenizer)
    model_config = build_model_config(config.model, vocabulary_size(tokenizer), special)
    if args.variant == "plain":
        model = PlainVAE(vocabulary_size(tokenizer), model_config, special["pad_token_id"]).to(device)
        step = plain_step(model, torch.optim.Adam(model.parameters(), lr=settings.lr), settings, device)
        batches = plain_batches(splits["train"].token_ids, settings.batch_size, special, settings.seed)
    elif kind == "reference":
        model = ResearchVAE(vocabulary_size(tokenizer), model_config).to(device)
        trained = DistributedDataParallel(model) if workers.distributed else model
        step = research_step(trained, torch.optim.SGD(model.parameters(), lr=PUBLISHED_LR), settings, device, dtype,
                             workers)
        batches = equal_length_batches(splits["train"].token_ids, settings.batch_size, special, settings.seed)
    elif kind == "floor":
        model = FloorModel(vocabulary_size(tokenizer), model_config, dtype).to(device)
        step = floor_step(model, device, dtype)
        batches = equal_length_batches(splits["train"].token_ids, settings.batch_size, special, settings.seed)
    else:
        model = TextVAE(model_config).to(device)
        runner = model_as_trained(model, settings, device, workers.distributed)  # sparse grads, DDP, compile as train()
        step = textvae_step(runner, build_optimizer(model, settings), settings, special, device, dtype, workers)
        batches = itertools.chain.from_iterable(  # train()'s bucketed, shuffled batches, epoch after epoch
            iterate_batches(splits["train"], settings.batch_size, special, shuffle=True, seed=settings.seed,
                            epoch=epoch) for epoch in itertools.count())
    if workers.distributed:  # as train() does: a batch too small to give every process a sentence is skipped
        batches = (batch for batch in batches if len(batch.indices) >= workers.world_size)
    model.train()
    outcome = guarded(lambda: measure(step, batches, args.warmup, args.steps, device), args.variant != "plain"
                      and dtype != torch.float32)
    if "skipped" in outcome:
        return {**report, **outcome}
    speed, faults, used = outcome["result"]
    peak = workers.all_sum(peak_memory_mb(device), device)  # all processes' peaks together
    teardown(workers)
    return {**report, "tokens_per_s": speed, "faults_per_step": faults, "padding_share": padding_share(used),
            "peak_mb": peak, "parameters": sum(p.numel() for p in model.parameters()),
            "train_sentences": len(splits["train"]), "vocab": len(tokenizer), "batch_size": settings.batch_size}


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: the GPU's peak allocation, or on CPU the peak resident set (ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def guarded(run: Callable[[], object], may_skip: bool) -> dict:
    """{'result': run()}; with `may_skip`, a RuntimeError inside (e.g. oneDNN refusing a bf16/fp16 LSTM
    primitive on this CPU) becomes {'skipped': its first line} instead of ending the benchmark."""
    try:
        return {"result": run()}
    except RuntimeError as error:
        if not may_skip:
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return {"skipped": f"failed at run time: {first[:300]}"}


def run_child(args: argparse.Namespace, variant: str) -> dict:
    """measure_variant in a fresh Python process. A lower-precision variant whose process dies (a crash
    inside a kernel) is reported as skipped; any other failure ends the benchmark."""
    base, _, processes = variant.partition("*")
    launcher = [sys.executable]
    if processes:  # "fp32*2": the textvae variant (or reference) as torchrun starts it, in 2 processes
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, __file__, "--config", args.config, "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--variant", base, "--threads-per-process",
               str(max(1, torch.get_num_threads() // int(processes or 1)))]
    for override in args.overrides:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        if variant != "plain" and not base.endswith("fp32"):
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            return {"variant": variant, "skipped": f"failed at run time (exit status {result.returncode}): "
                                                   f"{(lines or ['no message'])[-1][:300]}"}
        sys.exit(f"train_speed: the {variant} run failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "variant": variant}


def median_runs(args: argparse.Namespace, variants: list[str]) -> dict[str, dict]:
    """Each variant measured --rounds times, the variants taking turns within each round (so a change in
    the machine's load reaches all of them alike); per variant the run with the median tokens/s."""
    rounds: dict[str, list[dict]] = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant in variants:
            if not any("skipped" in run for run in rounds[variant]):
                rounds[variant].append(run_child(args, variant))
    chosen = {}
    for variant, runs in rounds.items():
        skipped = [run for run in runs if "skipped" in run]
        ranked = sorted(runs, key=lambda run: run["tokens_per_s"]) if not skipped else skipped
        chosen[variant] = {**ranked[(len(ranked) - 1) // 2], "rounds": len(runs)}
    return chosen


def precisions_to_measure(requested: str | None, auto: str, device: torch.device) -> list[str]:
    """The textvae precisions a run measures: the one asked for; else fp32 and bf16, plus fp16 on a GPU only
    (on a CPU fp16 runs only when asked: oneDNN's fp16 LSTM is missing or crashes on many CPUs)."""
    if requested:
        return [auto if requested == "auto" else requested]
    return [name for name in PRECISIONS if name != "fp16" or device.type != "cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ptb.yaml", help="textvae YAML config (default configs/ptb.yaml)")
    parser.add_argument("--steps", type=int, default=200, help="timed training steps (default 200)")
    parser.add_argument("--warmup", type=int, default=300, help="untimed steps before timing (default 300)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every variant this many times, taking turns; report the median (default 1)")
    parser.add_argument("--precision", help="measure textvae in this precision only (fp32 | bf16 | fp16 | auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--processes", type=int, default=1,
                        help="also measure textvae trained by this many DDP processes, as torchrun runs it (default 1: not)")
    parser.add_argument("--processes-reference", action="store_true",
                        help="with --processes, measure the reference in as many DDP processes too")
    parser.add_argument("--floor", action="store_true",
                        help="also time the arithmetic floor (LSTMs and output products alone) in fp32 and in "
                             "textvae's precision")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    parser.add_argument("--threads-per-process", type=int, default=1, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1 or args.processes < 1:
        parser.error("--steps, --rounds and --processes must be >= 1 and --warmup >= 0")
    if args.variant:
        report = measure_variant(args)
        if int(os.environ.get("RANK", "0")) == 0:  # one JSON line per variant, whatever the process count
            print(json.dumps(report))
        return

    device = select_device(load_config(args.config, args.overrides).train.device)
    auto = "bf16" if resolve_precision("auto", device) == torch.bfloat16 else "fp32"
    names = precisions_to_measure(args.precision, auto, device)
    chosen_name = names[0] if args.precision else auto
    variants = ["plain", "reference-fp32", *names] + ([f"reference-{chosen_name}"] if chosen_name != "fp32" else [])
    floors = [f"floor-{name}" for name in dict.fromkeys(["fp32", chosen_name])] if args.floor else []
    parallel = [f"{name}*{args.processes}" for name in names] if args.processes > 1 else []
    parallel += [f"reference-fp32*{args.processes}"] if parallel and args.processes_reference else []
    measured = median_runs(args, variants + floors + parallel)
    plain, reference = measured["plain"], measured["reference-fp32"]
    runs = {name: measured[name] for name in names}
    same_precision = ({chosen_name: measured[f"reference-{chosen_name}"]}
                      if chosen_name != "fp32" and "skipped" not in runs[chosen_name] else {})
    print(f"config {args.config}: {reference['train_sentences']} train sentences, vocab {reference['vocab']}, "
          f"batch {reference['batch_size']}, device {reference['device']}, {reference['threads']} torch threads, "
          f"{args.steps} timed steps after {args.warmup} warm-up steps each, every variant in its own process, "
          f"{args.rounds} round(s) taking turns, median shown")
    rows = ({"reference fp32": reference}
            | {f"reference {name}": run for name, run in same_precision.items()}
            | {"plain loop fp32": plain}
            | {f"textvae {name}" + (" (auto)" if name == auto else ""): run for name, run in runs.items()}
            | {describe_parallel(name): measured[name] for name in parallel}
            | {f"floor {name.removeprefix('floor-')}": measured[name] for name in floors})
    for name, run in rows.items():
        if "skipped" in run:
            print(f"{name:24} skipped: {run['skipped']}")
            continue
        ratio = run["tokens_per_s"] / reference["tokens_per_s"]
        print(f"{name:24}{run['tokens_per_s']:9.0f} target tokens/s  x{ratio:.2f} of reference  "
              f"padding {run['padding_share']:6.1%}  peak RSS {run['peak_mb']:6.0f} MB  "
              f"{run['faults_per_step']:6.0f} page faults/step  {run['parameters']:,} parameters")
    if not args.precision and "fp16" not in runs:
        print(f"{'textvae fp16':24} skipped: not run on a CPU by default (ask with --precision fp16)")
    chosen = runs[chosen_name]
    if "skipped" in chosen:
        if args.precision not in (None, "auto"):
            sys.exit(f"train_speed: precision {args.precision} cannot run here: {chosen['skipped']}")
        chosen_name, chosen = "fp32", runs.get("fp32") or median_runs(args, ["fp32"])["fp32"]  # auto's pick failed
    speed = chosen["tokens_per_s"]
    summary = {"tokens_per_s": round(speed), "reference_tokens_per_s": round(reference["tokens_per_s"]),
               "ratio": f"{speed / reference['tokens_per_s']:.2f}", "plain_tokens_per_s": round(plain["tokens_per_s"]),
               "plain_ratio": f"{speed / plain['tokens_per_s']:.2f}", "peak_rss_mb": round(chosen["peak_mb"]),
               "reference_peak_rss_mb": round(reference["peak_mb"])}
    same = same_precision.get(chosen_name)
    if same and "skipped" not in same:
        summary["same_precision_ratio"] = f"{speed / same['tokens_per_s']:.2f}"
    for name in floors:  # floor_ratio: in the summary's precision; floor_ratio_fp32 beside it when that differs
        run, floor_name = measured[name], name.removeprefix("floor-")
        key = "floor_ratio" if floor_name == chosen_name else f"floor_ratio_{floor_name}"
        if "skipped" not in run:
            summary[key] = f"{run['tokens_per_s'] / reference['tokens_per_s']:.2f}"
    if args.precision:
        summary |= {"precision": chosen["precision"], "padding_share": f"{chosen['padding_share']:.4f}"}
    for name in parallel:  # e.g. ratio_fp32_2_processes=X: against the single-process fp32 reference
        run = measured[name]
        if "skipped" not in run:
            summary[f"ratio_{name.replace('*', '_').replace('-', '_')}_processes"] = \
                f"{run['tokens_per_s'] / reference['tokens_per_s']:.2f}"
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


def describe_parallel(variant: str) -> str:
    """The table's name of a DDP variant: 'fp32*2' -> 'textvae fp32 ×2 procs'."""
    base, _, processes = variant.partition("*")
    return f"{'reference fp32' if base.startswith('reference') else 'textvae ' + base} ×{processes} procs"


if __name__ == "__main__":
    main()
