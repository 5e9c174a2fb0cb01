"""Sparse embedding gradients under plain SGD (textvae/training/sparse_gradients.py): the same update as dense
gradients, the clipping norm of torch's clip_grad_norm_, and on only where the update stays the same."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import batch_of, tiny_model

from textvae.config import TrainConfig
from textvae.training.setup import model_as_trained
from textvae.training.sparse_gradients import (sparse_gradients_apply, step_with_clipping, total_gradient_norm,
                                               use_sparse_embedding_gradients)
from textvae.training.step import training_step

SPECIAL = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "unk_token_id": 3}
CPU = torch.device("cpu")


def sentences(seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(4, 30, (int(length),), generator=generator).tolist()
            for length in torch.randint(2, 9, (6,), generator=generator)]


@pytest.mark.parametrize("clip", [0.0, 0.5, 1000.0])
def test_plain_sgd_makes_the_same_update_with_sparse_embedding_gradients(clip):
    """Three SGD steps on the same batches, from the same weights: every parameter ends where dense gradients
    take it, the logged gradient norms agree, and the embeddings' gradients really were sparse."""
    dense = tiny_model(seed=3).train()
    sparse = copy.deepcopy(dense)
    assert use_sparse_embedding_gradients(sparse) == 2  # the encoder's and the decoder's word embeddings
    settings = TrainConfig(optimizer="sgd", lr=1.0, grad_clip=clip, kl_schedule="constant", word_dropout=0.3)
    optimizers = [torch.optim.SGD(model.parameters(), lr=1.0) for model in (dense, sparse)]
    for step in range(3):
        batch = batch_of(sentences(step))
        norms = []
        for model, optimizer in zip((dense, sparse), optimizers):
            draws = torch.Generator().manual_seed(step)
            loss = training_step(model, optimizer, batch.token_ids, batch.lengths, step, settings, SPECIAL,
                                 generator=draws)
            norms.append(float(loss.grad_norm))
        assert norms[1] == pytest.approx(norms[0], rel=1e-5)
    assert sparse.encoder.embedding.weight.grad.is_sparse and sparse.decoder.embedding.weight.grad.is_sparse
    assert not dense.decoder.embedding.weight.grad.is_sparse
    for (name, expected), (_, got) in zip(dense.named_parameters(), sparse.named_parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(dense.decoder.embedding.weight, tiny_model(seed=3).decoder.embedding.weight)  # it trained


def test_the_clipping_norm_is_torchs_on_dense_gradients_and_counts_a_repeated_row_once():
    """The norm is clip_grad_norm_'s, and the clipped SGD step (lr 1) moves each weight by the gradient
    clip_grad_norm_ leaves."""
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(2)]
    for weight in weights:
        weight.grad = torch.randn(5, 3)
    reference = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    for parameter, weight in zip(reference, weights):
        parameter.grad = weight.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(reference, 1.0)
    assert total_gradient_norm(weights) == pytest.approx(float(expected), rel=1e-6)
    assert step_with_clipping(torch.optim.SGD(weights, lr=1.0), weights, 1.0) == pytest.approx(float(expected),
                                                                                               rel=1e-6)
    for weight, parameter in zip(weights, reference):
        torch.testing.assert_close(weight.detach(), parameter.detach() - parameter.grad)
    # a sparse gradient naming row 1 twice is the dense gradient with the two rows summed
    table = torch.nn.Parameter(torch.zeros(4, 2))
    table.grad = torch.sparse_coo_tensor([[1, 3, 1]], torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), (4, 2),
                                         check_invariants=True)
    assert total_gradient_norm([table]) == pytest.approx((16.0 + 1.0) ** 0.5)
    optimizer = torch.optim.SGD([table], lr=1.0)
    assert step_with_clipping(optimizer, [table], 1.0) == pytest.approx(17.0 ** 0.5)
    torch.testing.assert_close(table.detach().norm(), torch.tensor(1.0), atol=1e-5, rtol=0)  # moved by norm 1
    assert optimizer.param_groups[0]["lr"] == 1.0  # the clip factor was for that step alone
    with pytest.raises(ValueError, match="plain SGD"):
        step_with_clipping(torch.optim.SGD([table], lr=1.0, momentum=0.9), [table], 1.0)


@pytest.mark.parametrize(("overrides", "on"), [
    ({"optimizer": "sgd"}, True),
    ({"optimizer": "sgd", "momentum": 0.9}, False),  # momentum moves rows whose gradient is zero
    ({"optimizer": "sgd", "weight_decay": 0.01}, False),
    ({"optimizer": "adam"}, False),
    ({"optimizer": "adamw"}, False),
    ({"optimizer": "sgd", "compile": True}, False),
    ({"optimizer": "sgd", "precision": "fp16"}, False),
])
def test_sparse_gradients_are_on_only_where_the_update_stays_the_same(overrides, on):
    assert sparse_gradients_apply(TrainConfig(**overrides), CPU, distributed=False) is on
    assert sparse_gradients_apply(TrainConfig(optimizer="sgd"), CPU, distributed=True) is False
    assert sparse_gradients_apply(TrainConfig(optimizer="sgd"), CPU, distributed=False, loss_scaling=True) is False


@pytest.mark.parametrize("optimizer, sparse", [("sgd", True), ("adam", False)])
def test_the_model_as_trained_has_sparse_embeddings_only_under_plain_sgd(optimizer, sparse):
    model = tiny_model()
    trained = model_as_trained(model, TrainConfig(optimizer=optimizer), CPU, distributed=False)
    assert trained is model  # one process, no train.compile: the step calls the model itself
    tables = [module for module in model.modules() if isinstance(module, torch.nn.Embedding)]
    assert tables and all(table.sparse is sparse for table in tables)
