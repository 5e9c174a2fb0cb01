"""Tests for the speed machinery: the fused output loss, precision choice, allocator setting, fused Adam."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import requires_fast_bf16

from textvae import runtime
from textvae.training import threads as thread_choice
from textvae.config import TrainConfig
from textvae.errors import TextVAEError
from textvae.modeling import cpu_kernels, output_loss
from textvae.modeling.output_loss import projected_token_nll
from textvae.training import build_optimizer


def random_problem(rows: int = 37, hidden: int = 12, vocab: int = 53, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(rows, hidden, generator=generator, requires_grad=True)
    weight = torch.randn(vocab, hidden, generator=generator).mul_(0.3).requires_grad_()
    bias = torch.randn(vocab, generator=generator).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    upstream = torch.rand(rows, generator=generator)  # a per-token weighting, like per-sentence sums would give
    return states, weight, bias, targets, upstream


def gradients(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.fixture(params=["kernels", "torch"])
def output_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The output layer's two CPU paths: the fused C++ kernels (cpu_kernels.py; here for fp32 products on any CPU,
    where training uses them only with AVX-512, so that the fp32 tests' tight tolerances check the kernels'
    autograd) and torch's operations."""
    if request.param == "torch":
        monkeypatch.setattr(output_loss, "kernels_for", lambda device, dtype: None)
    elif cpu_kernels.softmax_kernels() is None:
        pytest.skip("the C++ kernels could not be built on this machine (no compiler or ninja)")
    else:
        monkeypatch.setattr(cpu_kernels, "KERNEL_DTYPES", (torch.bfloat16, torch.float32))
    return request.param


@pytest.mark.usefixtures("output_path")
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_output_loss_matches_cross_entropy_of_linear(with_bias: bool) -> None:
    states, weight, bias, targets, upstream = random_problem()
    bias_or_none = bias if with_bias else None
    expected = F.cross_entropy(F.linear(states, weight, bias_or_none), targets, reduction="none")
    fused = projected_token_nll(states, weight, bias_or_none, targets)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    inputs = (states, weight, bias) if with_bias else (states, weight)
    for got, want in zip(gradients((fused * upstream).sum(), *inputs), gradients((expected * upstream).sum(), *inputs)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("output_path")
def test_fused_output_loss_without_gradients_goes_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    states, weight, bias, targets, _ = random_problem(rows=50)
    expected = F.cross_entropy(F.linear(states, weight, bias), targets, reduction="none")
    monkeypatch.setattr(output_loss, "EVAL_ROWS_PER_SLICE", 7)  # 50 rows → 8 slices, the last one short
    with torch.no_grad():
        sliced = projected_token_nll(states, weight, bias, targets)
    torch.testing.assert_close(sliced, expected.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("output_path")
def test_fused_output_loss_without_gradients_rescores_rows_beyond_exp_range(monkeypatch: pytest.MonkeyPatch) -> None:
    states, weight, bias, targets, _ = random_problem(rows=50)
    with torch.no_grad():
        states[[3, 20, 45]] *= 300.0  # these rows' scores reach the hundreds: their unshifted sums overflow
    expected = F.cross_entropy(F.linear(states, weight, bias), targets, reduction="none")
    monkeypatch.setattr(output_loss, "EVAL_ROWS_PER_SLICE", 7)
    with torch.no_grad():
        sliced = projected_token_nll(states, weight, bias, targets)
    assert torch.isfinite(sliced).all()
    torch.testing.assert_close(sliced, expected.detach(), rtol=1e-5, atol=1e-4)


@pytest.mark.usefixtures("output_path")
def test_fused_output_loss_under_bf16_autocast_stays_close_and_returns_fp32() -> None:
    states, weight, bias, targets, upstream = random_problem()
    expected = F.cross_entropy(F.linear(states, weight, bias), targets, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = projected_token_nll(states, weight, bias, targets)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, expected, rtol=0.02, atol=0.05)  # bf16 keeps ~3 significant digits
    got = gradients((mixed * upstream).sum(), weight)[0]
    assert got.dtype == torch.float32  # master weights get fp32 gradients
    torch.testing.assert_close(got, gradients((expected * upstream).sum(), weight)[0], rtol=0.05, atol=0.02)


def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.delenv(runtime.AUTO_PRECISION_VARIABLE, raising=False)  # the suite sets it (conftest.py)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert runtime.resolve_precision("auto", cpu) == torch.float32
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert runtime.resolve_precision("auto", cpu) == torch.bfloat16
    assert runtime.resolve_precision("fp32", cpu) == torch.float32


def test_the_environment_fixes_what_auto_means_on_any_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    monkeypatch.setenv(runtime.AUTO_PRECISION_VARIABLE, "fp32")
    assert runtime.resolve_precision("auto", cpu) == torch.float32
    assert runtime.resolve_precision("fp32", cpu) == torch.float32  # a named precision is not affected
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(runtime, "cpu_supports", lambda dtype: True)
    monkeypatch.setenv(runtime.AUTO_PRECISION_VARIABLE, "bf16")
    assert runtime.resolve_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_supports", lambda dtype: False)
    with pytest.raises(TextVAEError, match="use precision fp32 or auto"):  # bf16 where oneDNN has no kernels
        runtime.resolve_precision("auto", cpu)
    monkeypatch.setenv(runtime.AUTO_PRECISION_VARIABLE, "fp16")
    with pytest.raises(TextVAEError, match="TEXTVAE_AUTO_PRECISION='fp16'"):
        runtime.resolve_precision("auto", cpu)


def test_the_suite_runs_with_an_explicit_precision() -> None:
    """conftest.py fixes what 'auto' means for every test and the processes tests start (fp32 unless the run
    asks for bf16), so no result depends on the CPU the suite runs on."""
    assert os.environ[runtime.AUTO_PRECISION_VARIABLE] in ("fp32", "bf16")


def test_unknown_or_unsupported_precision_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TextVAEError, match="unknown value 'fp8'"):
        runtime.resolve_precision("fp8", torch.device("cpu"))
    monkeypatch.setattr(runtime, "cpu_supports", lambda dtype: False)
    with pytest.raises(TextVAEError, match="use precision fp32 or auto"):
        runtime.resolve_precision("bf16", torch.device("cpu"))


def test_allocator_setting_applies_on_linux() -> None:
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the allocator setting is glibc-only")
    assert runtime.keep_freed_memory() is True


def test_adam_is_fused_and_updates_like_the_unfused_one() -> None:
    torch.manual_seed(0)
    fused_model, plain_model = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    plain_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, TrainConfig(optimizer="adam", lr=0.01))
    plain = torch.optim.Adam(plain_model.parameters(), lr=0.01)
    assert fused.defaults["fused"] is True
    inputs = torch.randn(10, 6)
    for model, optimizer in ((fused_model, fused), (plain_model, plain)):
        for _ in range(3):
            optimizer.zero_grad()
            model(inputs).pow(2).sum().backward()
            optimizer.step()
    for got, want in zip(fused_model.parameters(), plain_model.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@requires_fast_bf16()
def test_bf16_training_follows_fp32_training_closely(tmp_path: Path) -> None:
    """Mixed precision changes rounding, not the model: a few steps in bf16 land near the fp32 run's loss, and
    not on it (the bf16 run really multiplied in bf16)."""
    from textvae.config import load_config
    from textvae.training import train

    def valid_loss(precision: str) -> float:
        settings = load_config(None, ["model.embedding_size=16", "model.encoder_hidden_size=24",
                                      "model.decoder_hidden_size=24", "model.latent_size=4", "train.max_steps=12",
                                      "train.batch_size=32", "train.progress_bar=false", f"train.precision={precision}"])
        return train(settings, tmp_path / precision)["last_valid"]["loss"]

    fp32, bf16 = valid_loss("fp32"), valid_loss("bf16")
    assert bf16 == pytest.approx(fp32, rel=0.02) and bf16 != fp32


def test_thread_count_takes_the_cores_other_work_leaves_and_at_least_one() -> None:
    idle, half_busy = {0: 0.02, 1: 0.03}, {0: 0.97, 1: 0.04}
    assert thread_choice.thread_count(3, [0, 1], half_busy, 9.0) == (3, "train.num_threads=3")  # asked for: as given
    assert thread_choice.thread_count(0, [0, 1], idle, 0.1)[0] == 2
    threads, reason = thread_choice.thread_count(0, [0, 1], half_busy, 1.0)
    assert threads == 1 and reason == "train.num_threads=0: 1 of the 2 usable cores busy with other work: 1 torch thread"
    assert thread_choice.thread_count(0, [0, 1], {0: 1.0, 1: 0.99}, 2.0)[0] == 1  # all busy: still one
    assert thread_choice.thread_count(0, [1], half_busy, 1.0)[0] == 1  # pinned to the free core (taskset -c 1)
    assert thread_choice.thread_count(0, [0], half_busy, 1.0)[0] == 1  # pinned to the busy one: one, never zero
    assert thread_choice.thread_count(0, list(range(8)), {cpu: 0.9 * (cpu < 3) for cpu in range(8)}, None)[0] == 5
    assert thread_choice.thread_count(0, list(range(8)), {}, None, processes=2)[0] == 4  # shared by two processes
    assert thread_choice.thread_count(0, list(range(8)), None, 2.6)[0] == 5  # no /proc/stat: the load average stands in
    assert thread_choice.thread_count(0, list(range(8)), None, 30.0)[0] == 1
    assert thread_choice.thread_count(0, list(range(4)), None, None)[0] == 4  # nothing known: every usable core


def test_an_explicit_omp_num_threads_is_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    thread_choice.choose_thread_count.cache_clear()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setattr(thread_choice, "busy_shares", lambda: pytest.fail("no sample is needed"))
    assert thread_choice.choose_thread_count(0) == (3, "train.num_threads=0: OMP_NUM_THREADS=3")
    assert thread_choice.choose_thread_count(2)[0] == 2  # the config's number wins
    thread_choice.choose_thread_count.cache_clear()


def test_busy_shares_reads_per_cpu_shares_from_proc_stat(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = iter([{0: (100, 1000), 1: (50, 1000)}, {0: (190, 1100), 1: (55, 1100)}])
    monkeypatch.setattr(thread_choice, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(thread_choice.time, "sleep", lambda seconds: None)
    assert thread_choice.busy_shares() == pytest.approx({0: 0.9, 1: 0.05})
    monkeypatch.setattr(thread_choice, "_cpu_times", lambda: (_ for _ in ()).throw(OSError("no /proc")))
    assert thread_choice.busy_shares() is None


def logsumexp_nll(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(−log softmax[target], logsumexp) per column of vocabulary-major scores: the textbook arithmetic."""
    log_normaliser = torch.logsumexp(scores, dim=0)
    return log_normaliser - scores.gather(0, targets.unsqueeze(0)).squeeze(0), log_normaliser


def test_unshifted_exponentials_equal_logsumexp_then_exp() -> None:
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(97, 23, generator=generator) * 4  # (vocab, rows)
    targets = torch.randint(0, 97, (23,), generator=generator)
    nll, log_normaliser = logsumexp_nll(scores, targets)
    rescored = []
    fused_nll, exponentials, normaliser = output_loss._token_nll_and_exponentials(
        scores.clone(), targets, lambda columns: rescored.append(columns) or scores[:, columns].clone())
    assert rescored == []  # no column near fp32's exp limits: one unshifted pass
    torch.testing.assert_close(fused_nll, nll, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(exponentials / normaliser, (scores - log_normaliser).exp(), rtol=1e-5, atol=1e-7)


def test_unshifted_exponentials_rescore_the_columns_that_overflow_or_underflow() -> None:
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(97, 6, generator=generator) * 4
    scores[:, 1] += 120.0  # exp overflows to inf without a shift
    scores[:, 4] -= 150.0  # exp underflows to 0 without a shift
    targets = torch.randint(0, 97, (6,), generator=generator)
    nll, log_normaliser = logsumexp_nll(scores, targets)
    rescored = []
    fused_nll, exponentials, normaliser = output_loss._token_nll_and_exponentials(
        scores.clone(), targets, lambda columns: rescored.append(columns.tolist()) or scores[:, columns].clone())
    assert rescored == [[1, 4]]
    assert torch.isfinite(fused_nll).all() and torch.isfinite(exponentials).all()
    torch.testing.assert_close(fused_nll, nll, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(exponentials / normaliser, (scores - log_normaliser).exp(), rtol=1e-5, atol=1e-7)


@pytest.mark.usefixtures("output_path")
def test_fused_output_loss_under_bf16_autocast_survives_scores_beyond_exp_range() -> None:
    states, weight, bias, targets, upstream = random_problem()
    with torch.no_grad():
        bias[3] += 200.0  # every column's sum overflows unshifted: all of them are rescored
    expected = F.cross_entropy(F.linear(states, weight, bias), targets, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = projected_token_nll(states, weight, bias, targets)
    assert torch.isfinite(mixed).all()
    torch.testing.assert_close(mixed, expected, rtol=0.02, atol=1.0)  # bf16 scores near 200 keep ~1 nat
    got = gradients((mixed * upstream).sum(), states, weight)
    want = gradients((expected * upstream).sum(), states, weight)
    for g, w in zip(got, want):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w, rtol=0.05, atol=0.05)
