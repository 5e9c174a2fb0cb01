"""The output layer and its cross-entropy in one step: per-token −log p(target) from decoder states.

The projection to the vocabulary dominates a text VAE's cost. `F.cross_entropy(linear(h))` keeps
three vocabulary-sized tensors per step (logits, log-softmax, and a zero-filled gradient); this
function keeps one. Forward exponentiates the scores in place, without the usual pass for each
column's maximum (a column beyond fp32's exp range is scored again with a shift), and saves them
with their column sums; backward subtracts the one-hot targets, normalises in place and feeds the
result to the two weight products. Without gradients (evaluation) rows go through in slices so
memory stays bounded however many IW samples a batch holds. Scores are laid out vocabulary-major,
(vocab, rows) = W hᵀ: on CPU that product ran 1.4–1.7× faster than h Wᵀ (benchmarks/matmul_speed.py).
The matrix products run in the compute dtype (bf16/fp16 under mixed precision); the exponentials,
their sums and the losses are always fp32. On CPU the passes over the scores run as fused C++ kernels
(cpu_kernels.py) in the products' dtype (bf16, and fp32 on CPUs with AVX-512): the forward's exponentiates each
score once, sums in fp32 and writes the exponential over it; the backward's scales those in place (no second
exponential). Where the kernels cannot be built, or do not apply, torch's operations do the same arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_kernels import kernels_for

EVAL_ROWS_PER_SLICE = 512  # rows scored at a time without gradients (20 MB for a 10k vocabulary: stays in cache)


def compute_dtype_for(device: torch.device, parameter_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the matrix products: the autocast dtype inside an autocast region, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return parameter_dtype


def _scores(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype,
            in_fp32: bool = True) -> torch.Tensor:
    """Vocabulary scores W hᵀ + b, (vocab, rows), in fp32 (or, `in_fp32` False, in `dtype`)."""
    hidden_t, weight = hidden.to(dtype).t(), weight.to(dtype)
    if bias is None:
        scores = weight @ hidden_t
    else:
        scores = torch.addmm(bias.to(dtype).unsqueeze(1), weight, hidden_t)
    return scores.float() if in_fp32 else scores


SAFE_NORMALISER = 1e-30  # below it a column's exponentials may have underflowed (every score under about −69)


def _token_nll_and_exponentials(scores: torch.Tensor, targets: torch.Tensor, rescore) -> tuple[torch.Tensor, ...]:
    """(−log softmax[target] per column, exp(scores − shift) written over `scores`, their column sums), with
    no pass for the column maxima: scores are exponentiated unshifted (fp32 exp overflows only above ~88.7),
    and the rare column whose sum overflowed or underflowed is rescored by `rescore(columns)` and shifted by
    its maximum. Two passes over the matrix where max, subtract, exp and normalise take four; the
    normalisation is folded into the backward's scaling."""
    target_scores = scores.gather(0, targets.unsqueeze(0)).squeeze(0)
    exponentials = scores.exp_()
    normaliser = exponentials.sum(dim=0)
    shift = torch.zeros_like(normaliser)
    unsafe = ~(normaliser.isfinite() & (normaliser >= SAFE_NORMALISER))
    if unsafe.any():
        columns = unsafe.nonzero().squeeze(1)
        rescored = rescore(columns)
        shift[columns] = rescored.amax(dim=0)
        exponentials[:, columns] = rescored.sub_(shift[columns]).exp_()
        normaliser[columns] = exponentials[:, columns].sum(dim=0)
    return normaliser.log() + shift - target_scores, exponentials, normaliser


def _scored_token_nll(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                      dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """_token_nll_and_exponentials of the scores of `hidden`'s rows, a column beyond exp's range scored again."""
    return _token_nll_and_exponentials(_scores(hidden, weight, bias, dtype), targets,
                                       lambda columns: _scores(hidden[columns], weight, bias, dtype))


def _token_nll_by_kernel(kernels, scores: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                         rescore=None) -> tuple[torch.Tensor, ...]:
    """(−log softmax[target] per column, each column's shift and Σ exp(scores + bias − shift), the target scores
    with their bias in fp32) of vocabulary-major `scores` (W hᵀ, in the products' dtype) and an fp32 `bias` (vocab,
    or empty), by the fused kernel. The shift is 0 but for a column whose unshifted sum overflowed or underflowed,
    which is shifted by its maximum (as _token_nll_and_exponentials does). Without `rescore` the scores are left
    as they are; with it (training) they are overwritten by exp(scores + bias − shift), rounded to their dtype, for
    the backward, and `rescore(columns)` gives such a column's scores (W hᵀ, fp32) again."""
    target_scores = scores.gather(0, targets.unsqueeze(0)).squeeze(0).float()
    if bias.numel():
        target_scores += bias[targets]
    normaliser = (kernels.column_exp_sums if rescore is None else kernels.exp_column_sums_)(scores, bias)
    shift = torch.zeros_like(normaliser)
    unsafe = ~(normaliser.isfinite() & (normaliser >= SAFE_NORMALISER))
    if unsafe.any():
        columns = unsafe.nonzero().squeeze(1)
        rescored = scores[:, columns].float() if rescore is None else rescore(columns)
        if bias.numel():
            rescored += bias.unsqueeze(1)
        shift[columns] = rescored.amax(dim=0)
        exponentials = rescored.sub_(shift[columns]).exp_()
        normaliser[columns] = exponentials.sum(dim=0)
        if rescore is not None:
            scores[:, columns] = exponentials.to(scores.dtype)
    return normaliser.log() + shift - target_scores, shift, normaliser, target_scores


def _kernel_bias(bias: torch.Tensor | None) -> torch.Tensor:
    """The bias as the kernels take it: fp32, contiguous, empty for none (it is added in fp32, not rounded to the
    products' dtype)."""
    return torch.empty(0) if bias is None else bias.detach().float().contiguous()


class _ProjectedCrossEntropy(torch.autograd.Function):
    """Autograd for −log softmax(hidden Wᵀ + b)[target] that saves one (vocab, rows) matrix: the unnormalised
    exponentials of the scores (with their column sums), in fp32, or with the CPU kernels in the products' dtype
    (bf16: rounded once there, and once more as the gradient the backward writes over them)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, compute_dtype):
        ctx.dtypes = hidden.dtype, weight.dtype
        ctx.kernels = kernels_for(hidden.device, compute_dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            # converted once: the backward's products reuse them
            hidden, weight = hidden.to(compute_dtype), weight.to(compute_dtype)
            if ctx.kernels is None:
                nll, exponentials, normaliser = _scored_token_nll(hidden, weight, bias, targets, compute_dtype)
                ctx.save_for_backward(hidden, weight, targets, exponentials, normaliser)
            else:  # the exponentials are kept over the scores, in the products' dtype
                scores = _scores(hidden, weight, None, compute_dtype, in_fp32=False)
                nll, shift, normaliser, target_scores = _token_nll_by_kernel(
                    ctx.kernels, scores, _kernel_bias(bias), targets,
                    rescore=lambda columns: _scores(hidden[columns], weight, None, compute_dtype))
                ctx.save_for_backward(hidden, weight, targets, scores, normaliser, shift, target_scores)
        ctx.compute_dtype, ctx.has_bias = compute_dtype, bias is not None
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        hidden, weight, targets, gradient, normaliser, *kernel_saved = ctx.saved_tensors
        dtype, (hidden_dtype, weight_dtype) = ctx.compute_dtype, ctx.dtypes
        wants_bias = ctx.has_bias and ctx.needs_input_grad[2]
        with torch.autocast(hidden.device.type, enabled=False):
            if ctx.kernels is None:
                # d nll / d scores = softmax − one_hot(target), scaled by the incoming gradient; the softmax is
                # exponentials / normaliser, so the division joins the scaling pass (all in place)
                columns = torch.arange(targets.size(0), device=targets.device)
                gradient[targets, columns] -= normaliser
                gradient.mul_(grad_nll / normaliser)
                # the bias gradient from the fp32 values (the same tensor in fp32), not a copy back from bf16/fp16
                grad_bias = gradient.sum(1).to(weight_dtype) if wants_bias else None
                grad_scores = gradient.to(dtype)  # (vocab, rows)
            else:  # the same arithmetic in one pass, written over the saved exponentials
                shift, target_scores = kernel_saved
                upstream = grad_nll.float().contiguous()
                bias_sums = torch.empty(gradient.size(0) if wants_bias else 0)
                ctx.kernels.softmax_gradient_(gradient, shift, upstream / normaliser, targets.int(), target_scores,
                                              upstream, bias_sums)
                grad_bias = bias_sums.to(weight_dtype) if wants_bias else None
                grad_scores = gradient
            # (Wᵀ G)ᵀ rather than Gᵀ W: the product that reads G in its own layout is the faster one on CPU
            grad_hidden = (weight.t() @ grad_scores).t().to(hidden_dtype) if ctx.needs_input_grad[0] else None
            grad_weight = (grad_scores @ hidden).to(weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_hidden, grad_weight, grad_bias, None, None


def projected_token_nll(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        targets: torch.Tensor) -> torch.Tensor:
    """−log p(target) in nats (fp32) for each row of `hidden` (rows, hidden) under softmax(hidden Wᵀ + b)."""
    dtype = compute_dtype_for(hidden.device, weight.dtype)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ProjectedCrossEntropy.apply(hidden, weight, bias, targets, dtype)
    pieces, kernels = [], kernels_for(hidden.device, dtype)
    kernel_bias = _kernel_bias(bias)
    with torch.autocast(hidden.device.type, enabled=False):
        # converted once, not in every slice (a 10k-word bf16 weight costs about as much as a slice's product)
        weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
        for start in range(0, hidden.size(0), EVAL_ROWS_PER_SLICE):
            rows = slice(start, start + EVAL_ROWS_PER_SLICE)
            if kernels is None:
                pieces.append(_scored_token_nll(hidden[rows], weight, bias, targets[rows], dtype)[0])
            else:
                scores = _scores(hidden[rows], weight, None, dtype, in_fp32=False)
                pieces.append(_token_nll_by_kernel(kernels, scores, kernel_bias, targets[rows])[0])
    return torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)


class VocabularyOutput(nn.Module):
    """What every decoder shares: its hidden states go through dropout and `self.output` to the vocabulary."""

    output: nn.Linear
    output_dropout: nn.Dropout

    def output_weight(self) -> torch.Tensor:
        """The vocabulary layer's weight (vocab, hidden)."""
        return self.output.weight

    def output_bias(self) -> torch.Tensor | None:
        """The vocabulary layer's bias (vocab,), if it has one."""
        return self.output.bias

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary scores for hidden states of any leading shape."""
        return F.linear(self.output_dropout(hidden), self.output_weight(), self.output_bias())

    def token_nll(self, hidden: torch.Tensor, targets: torch.Tensor,
                  added_scores: tuple[torch.Tensor, nn.Linear] | None = None) -> torch.Tensor:
        """−log p(target) (fp32) for each row of `hidden` (rows, hidden), without keeping the logits.
        `added_scores` = (features (rows, k), layer k → vocab): that layer's scores of the features join the
        vocabulary scores inside the same fused softmax (TextVAEConfig.bag_of_words_bias), as one product
        [hidden, features] [W, W_layer]ᵀ + b + b_layer."""
        hidden, weight, bias = self.output_dropout(hidden), self.output_weight(), self.output_bias()
        if added_scores is not None:
            features, layer = added_scores
            hidden = torch.cat([hidden, features.to(hidden.dtype)], dim=1)
            weight = torch.cat([weight, layer.weight.to(weight.dtype)], dim=1)
            bias = layer.bias if bias is None else bias + layer.bias.to(bias.dtype)
        return projected_token_nll(hidden, weight, bias, targets)
