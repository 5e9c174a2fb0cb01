"""Tests for the fused CPU softmax kernels (textvae/modeling/csrc/softmax_columns.cpp) against torch's arithmetic."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from textvae import runtime
from textvae.modeling import cpu_kernels


@pytest.fixture(scope="module")
def kernels():
    built = cpu_kernels.softmax_kernels()
    if built is None:
        pytest.skip("the C++ kernels could not be built on this machine (no compiler or ninja); "
                    "the output layer's torch path is tested in test_speed.py")
    return built


# column counts around the 8- and 16-lane blocks (the short last block goes through a padded copy); vocabularies
# below and above the parallel grain (64 rows)
SHAPES = [(5, 1), (40, 15), (97, 16), (130, 17), (301, 37)]


@pytest.mark.parametrize("vocab,columns", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_column_sums_equal_torch_exp_sums(kernels, vocab: int, columns: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(vocab)
    scores = (torch.randn(vocab, columns, generator=generator) * 5).to(dtype)
    original = scores.clone()
    expected = scores.double().exp().sum(0).float()
    torch.testing.assert_close(kernels.column_exp_sums(scores, torch.empty(0)), expected, rtol=2e-6, atol=0)
    assert torch.equal(scores, original)  # read only (evaluation)
    bias = torch.randn(vocab, generator=generator)  # added to each row in fp32
    exponentials = (scores.double() + bias.double().unsqueeze(1)).exp()
    expected = exponentials.sum(0).float()
    torch.testing.assert_close(kernels.column_exp_sums(scores, bias), expected, rtol=2e-6, atol=0)
    # training's forward: the same sums, and each exponential written over its score in the scores' dtype
    written = scores.clone()
    torch.testing.assert_close(kernels.exp_column_sums_(written, bias), expected, rtol=2e-6, atol=0)
    ulp = 3e-7 if dtype == torch.float32 else 2**-8  # bf16: rounded once (half an ulp) from an exp within 2 fp32 ulp
    of_fp32_arguments = (scores.float() + bias.unsqueeze(1)).double().exp()  # the kernel adds the bias in fp32
    torch.testing.assert_close(written.double(), of_fp32_arguments, rtol=ulp, atol=0)


def test_exp_is_accurate_to_a_few_ulp_over_fp32s_range(kernels) -> None:
    values = torch.linspace(-86.9, 87.9, 200_003).unsqueeze(0)  # one score per column: the sum is exp itself
    got, want = kernels.column_exp_sums(values, torch.empty(0)).double(), values.squeeze(0).double().exp()
    assert ((got - want).abs() / want).max().item() < 3e-7


def test_beyond_exps_range_the_sum_is_inf_or_zero_and_nan_stays_nan(kernels) -> None:
    scores = torch.zeros(3, 4)
    scores[:, 1] = torch.tensor([1.0, 95.0, 2.0])  # overflows: the caller rescores this column shifted
    scores[:, 2] = -120.0  # underflows to zero: rescored too
    scores[0, 3] = float("nan")
    sums = kernels.column_exp_sums(scores, torch.empty(0))
    assert sums[0] == 3.0 and sums[1] == float("inf") and sums[2] == 0.0 and sums[3].isnan()


@pytest.mark.parametrize("vocab,columns", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradient_equals_autograds_of_cross_entropy(kernels, vocab: int, columns: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(columns)
    scores = (torch.randn(vocab, columns, generator=generator) * 3).to(dtype)
    bias = torch.randn(vocab, generator=generator)
    targets = torch.randint(0, vocab, (columns,), generator=generator)
    upstream = torch.rand(columns, generator=generator)
    exact = (scores.float() + bias.unsqueeze(1)).requires_grad_()
    (F.cross_entropy(exact.t(), targets, reduction="none") * upstream).sum().backward()
    shift = torch.zeros(columns)
    shift[::2] = exact.detach()[:, ::2].amax(0)  # a shifted column gives the same softmax
    normaliser = (exact.detach() - shift).exp().sum(0)
    target_scores = exact.detach().gather(0, targets.unsqueeze(0)).squeeze(0)
    bias_grad = torch.empty(vocab)
    gradient = (exact.detach() - shift).exp().to(dtype)  # the exponentials the forward's kernel leaves
    kernels.softmax_gradient_(gradient, shift, upstream / normaliser, targets.int(), target_scores, upstream,
                              bias_grad)
    # written in the scores' dtype: in bf16 the exponential was rounded once and the gradient once more (each
    # within half an ulp, 2^-8 relative), the targets' entries once, from their fp32 scores
    rounding = 1e-5 if dtype == torch.float32 else 2**-7
    torch.testing.assert_close(gradient.float(), exact.grad, rtol=rounding, atol=1e-6)
    target_entries = gradient[targets, torch.arange(columns)]
    expected_targets = exact.grad[targets, torch.arange(columns)].to(dtype)
    torch.testing.assert_close(target_entries, expected_targets, rtol=1e-5 if dtype == torch.float32 else 0,
                               atol=1e-6)
    # the row sums, in fp32 from the (rounded) exponentials before the gradient's rounding: each softmax term
    # within its rounding of the exponential, the targets' −upstream exact
    softmax_part = exact.grad.sum(1) + torch.zeros(vocab).index_add_(0, targets, upstream)
    bound = (1e-5 if dtype == torch.float32 else 2**-8) * softmax_part + 1e-6
    assert ((bias_grad - exact.grad.sum(1)).abs() <= bound).all()


def test_gradient_refuses_a_target_outside_the_vocabulary(kernels) -> None:
    scores, ones = torch.zeros(4, 2), torch.ones(2)
    with pytest.raises(RuntimeError, match="target 4 is outside the vocabulary of 4"):
        kernels.softmax_gradient_(scores, ones * 0, ones, torch.tensor([1, 4], dtype=torch.int32), ones, ones,
                                  torch.empty(0))


def test_the_switch_turns_the_kernels_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_kernels.SWITCH_VARIABLE, "0")
    cpu_kernels.softmax_kernels.cache_clear()
    try:
        assert cpu_kernels.softmax_kernels() is None
        assert cpu_kernels.kernels_for(torch.device("cpu"), torch.bfloat16) is None
    finally:
        monkeypatch.delenv(cpu_kernels.SWITCH_VARIABLE)
        cpu_kernels.softmax_kernels.cache_clear()


def test_the_kernels_apply_to_bf16_products_on_cpu_and_to_fp32_ones_with_avx512(kernels) -> None:
    assert cpu_kernels.kernels_for(torch.device("cpu"), torch.bfloat16) is kernels
    with_avx512 = "avx512f" in runtime.cpu_flags()  # fp32 was measured faster there only
    assert (cpu_kernels.kernels_for(torch.device("cpu"), torch.float32) is kernels) == with_avx512
    assert cpu_kernels.kernels_for(torch.device("cpu"), torch.float16) is None
    assert cpu_kernels.kernels_for(torch.device("cuda"), torch.float32) is None


def test_a_build_that_fails_is_a_warning_and_the_torch_path(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:
    from torch.utils import cpp_extension

    def no_compiler(**_):
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # no earlier build there: it must build
    monkeypatch.delenv("TEXTVAE_CPU_KERNELS", raising=False)  # a build is tried even where the suite runs without kernels
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    cpu_kernels.softmax_kernels.cache_clear()
    try:
        assert cpu_kernels.softmax_kernels() is None
    finally:
        cpu_kernels.softmax_kernels.cache_clear()
    assert "could not be built (Ninja is required to load C++ extensions)" in caplog.text


def test_a_build_is_reused_from_its_directory(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    name = cpu_kernels.build_name()
    assert (cpu_kernels.build_directory(name) / f"{name}.so").is_file()
    monkeypatch.setattr(cpp_extension, "load", lambda **_: pytest.fail("an existing build is imported, not rebuilt"))
    cpu_kernels.softmax_kernels.cache_clear()
    try:
        again = cpu_kernels.softmax_kernels()
    finally:
        cpu_kernels.softmax_kernels.cache_clear()
    assert again.column_exp_sums(torch.zeros(3, 2), torch.empty(0)).tolist() == [3.0, 3.0]
