"""The LSTM encoder's forward + backward on a batch of equal-length sentences: packed against dense input.

Packing (pack_padded_sequence) hides padding from the LSTM, but on a CPU torch runs a packed LSTM as a
loop of per-step matrix products and activations (and their autograd nodes), while a dense batch goes to
oneDNN's fused LSTM; under bf16 autocast only the dense one runs in bf16. Length-bucketed training batches
are nearly all of one length (0.1% padding on PTB), so the encoder can skip packing for them. The two
variants alternate in one process, --rounds rounds of --repeats calls each, and the median round counts
(the ratio stays meaningful on a busy machine; the absolute rates do not). Run from the repo root:
  python benchmarks/encoder_packing.py
Last line: fp32_dense_speedup=X bf16_dense_speedup=X fp32_max_abs_difference=X
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=24, help="words + <eos> per sentence (default 24, PTB's mean)")
    parser.add_argument("--size", type=int, default=256, help="embedding and hidden size (default 256)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(args.size, args.size, batch_first=True)
    inputs = torch.randn(args.batch, args.length, args.size)
    lengths = torch.full((args.batch,), args.length)

    def run(packed: bool, dtype: torch.dtype) -> torch.Tensor:
        x = inputs.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            feed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False) if packed else x
            _, (final, _) = lstm(feed)
        final.float().pow(2).sum().backward()
        return final.detach().float()

    difference = float((run(True, torch.float32) - run(False, torch.float32)).abs().max())
    print(f"{torch.get_num_threads()} torch threads; batch {args.batch} x {args.length} steps, size {args.size}; "
          f"{args.rounds} alternating rounds of {args.repeats} forward+backward calls")
    summary = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {True: [], False: []}
        for _ in range(args.rounds):
            for packed in (True, False):
                start = time.perf_counter()
                for _ in range(args.repeats):
                    run(packed, dtype)
                rates[packed].append(args.repeats / (time.perf_counter() - start))
        packed_rate, dense_rate = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"{name}: packed {packed_rate:7.1f} calls/s, dense {dense_rate:7.1f} calls/s (median rounds)")
        summary[f"{name}_dense_speedup"] = f"{dense_rate / packed_rate:.2f}"
    summary["fp32_max_abs_difference"] = f"{difference:.1e}"
    print(" ".join(f"{key}={value}" for key, value in summary.items()))


if __name__ == "__main__":
    main()
