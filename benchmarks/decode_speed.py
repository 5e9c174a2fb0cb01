"""How fast a trained run decodes: sentences per second for greedy, top-p and beam-5 decoding of prior samples,
and greedy decoding of the same codes one sentence at a time, in the same run, to show what batching buys.

All strategies go through `textvae.generation.decode` (rows that emit <eos> leave the batch). The codes
are `--count` draws from the prior; batched decoding takes them `--batch-size` at a time (default: all).
Last line:
  greedy_batched_per_s=N greedy_single_per_s=N ratio=X top_p_per_s=N beam5_per_s=N
where ratio = batched / one-at-a-time greedy speed. Run from the repo root, e.g.
  python benchmarks/decode_speed.py runs/ptb --count 1000
"""

from __future__ import annotations

import argparse
import time

import torch

import textvae
from textvae.runtime import noise_generator
from textvae.generation import DecodingOptions, decode, prior_sample


def timed(device: torch.device, work):
    """`work()`'s result and its wall-clock seconds (waiting for the GPU to finish when there is one)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def in_batches(model, z: torch.Tensor, options: DecodingOptions, batch_size: int, generator=None) -> list[list[int]]:
    return [ids for start in range(0, z.size(0), batch_size)
            for ids in decode(model, z[start: start + batch_size], options, generator=generator)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--count", type=int, default=1000, help="prior samples to decode (default 1000)")
    parser.add_argument("--batch-size", type=int, default=0, help="codes decoded together (default 0 = all)")
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    vae = textvae.load(args.run_dir, device=args.device)
    model, device = vae.model, vae.device
    batch_size = args.batch_size or args.count
    z = prior_sample(model, args.count, noise_generator(device, args.seed))
    greedy = DecodingOptions(max_length=args.max_length)
    top_p = DecodingOptions(strategy="top-p", top_p=args.top_p, max_length=args.max_length)
    beam = DecodingOptions(strategy="beam", beam_size=5, max_length=args.max_length)
    decode(model, z[:8], greedy)  # warm-up: first-call allocations and kernel choices are not decoding speed
    print(f"{args.run_dir}: {args.count} prior samples, max_length {args.max_length}, batches of {batch_size}, "
          f"device {device}, {torch.get_num_threads()} torch threads")

    batched, batched_seconds = timed(device, lambda: in_batches(model, z, greedy, batch_size))
    single, single_seconds = timed(device, lambda: [decode(model, z[row: row + 1], greedy)[0]
                                                    for row in range(args.count)])
    sampled, top_p_seconds = timed(device, lambda: in_batches(model, z, top_p, batch_size,
                                                              noise_generator(device, args.seed + 1)))
    beamed, beam_seconds = timed(device, lambda: in_batches(model, z, beam, batch_size))

    same = sum(a == b for a, b in zip(batched, single))
    rates = {}
    for name, sequences, seconds in (("greedy batched", batched, batched_seconds),
                                     ("greedy one at a time", single, single_seconds),
                                     ("top-p", sampled, top_p_seconds), ("beam-5", beamed, beam_seconds)):
        rates[name] = args.count / seconds
        words = sum(len(ids) for ids in sequences) / len(sequences)
        print(f"{name:<21} {seconds:8.2f} s  {rates[name]:9.1f} sentences/s  (mean {words:.1f} words)")
    print(f"one-at-a-time greedy gave the batched sentence for {same}/{args.count} codes")
    ratio = rates["greedy batched"] / rates["greedy one at a time"]
    print(f"greedy_batched_per_s={rates['greedy batched']:.0f} greedy_single_per_s={rates['greedy one at a time']:.0f} "
          f"ratio={ratio:.1f} top_p_per_s={rates['top-p']:.0f} beam5_per_s={rates['beam-5']:.0f}")


if __name__ == "__main__":
    main()
