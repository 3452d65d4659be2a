"""Roost (Goodall & Lee 2020): a composition as a weighted set of elements."""

import numpy as np
import pytest
import torch

from datamodules.sources.element_tables import element_table
from lightning_modules.nets import Roost
from materials.composition import parse_compositions
from materials.elements import ELEMENT_INDEX


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Roost().eval()


def _fractions(*formulas):
    return torch.from_numpy(parse_compositions(list(formulas)).fractions).float()


def test_element_order_does_not_change_the_prediction(net):
    x = _fractions("LiFePO4", "NaCl", "Ba2YCu3O7", "Fe")
    elements, weights, mask = Roost.as_set(x)
    reference = net.forward_set(elements, weights, mask)
    for seed in range(5):
        order = torch.randperm(elements.shape[1], generator=torch.Generator().manual_seed(seed))
        shuffled = net.forward_set(elements[:, order], weights[:, order], mask[:, order])
        torch.testing.assert_close(shuffled, reference, rtol=1e-5, atol=1e-6)
    # and the formula's own order: the same composition written two ways
    torch.testing.assert_close(net(_fractions("OFe", "O4PFeLi")), net(_fractions("FeO", "LiFePO4")))


def test_scaling_the_formula_does_not_change_the_prediction(net):
    torch.testing.assert_close(net(_fractions("Fe4O6", "Na2Cl2")), net(_fractions("Fe2O3", "NaCl")))
    elements, weights, mask = Roost.as_set(_fractions("Fe2O3"))
    torch.testing.assert_close(net.forward_set(elements, 7 * weights, mask), net.forward_set(elements, weights, mask))


def test_padding_does_not_leak_into_a_composition(net):
    """A composition predicts the same alone and in a batch padded to a five-element neighbour."""
    alone = net(_fractions("NaCl"))
    batched = net(_fractions("NaCl", "Ba2YCu3O7Sr"))[:1]
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-6)


def test_mat2vec_rows_follow_the_elemnet_element_order():
    table = element_table("mat2vec")
    assert table.shape == (86, 200) and np.isfinite(table).all()
    assert not np.allclose(table[ELEMENT_INDEX["Fe"]], table[ELEMENT_INDEX["Co"]])  # distinct elements differ


def test_roost_refuses_magpie_features():
    with pytest.raises(ValueError, match="features: fractions"):
        Roost(n_features=145)


def test_gradients_reach_the_embeddings_and_the_attention_powers(net):
    net = Roost().train()
    net(_fractions("LiFePO4", "NaCl")).sum().backward()
    assert net.embedding.weight.grad[ELEMENT_INDEX["Li"]].abs().sum() > 0
    assert net.embedding.weight.grad[ELEMENT_INDEX["Xe"]].abs().sum() == 0  # absent elements get nothing
    assert all(layer.power.grad is not None and torch.isfinite(layer.power.grad).all() for layer in net.layers)


def test_pair_mlps_equal_the_mlp_of_the_concatenated_pair():
    """The first layer applied per node and broadcast over the pairs is the paper's MLP on [h_i, h_j]."""
    from lightning_modules.nets.roost import WeightedAttentionLayer

    torch.manual_seed(0)
    layer = WeightedAttentionLayer(width=8, heads=2, hidden=16)
    h = torch.randn(3, 5, 8)
    pairs = torch.cat([h.unsqueeze(2).expand(3, 5, 5, 8), h.unsqueeze(1).expand(3, 5, 5, 8)], dim=-1)
    for mlp in (layer.gate, layer.message):
        assert torch.allclose(layer.on_pairs(mlp, h), mlp(pairs), atol=1e-5)


def test_a_batch_of_mixed_element_counts_equals_each_composition_alone(net):
    """forward runs each element count in its own pass and returns the rows in their order."""
    formulas = ["NaCl", "LiFePO4", "Fe2O3", "BaSrTiMnO3", "Al2O3", "KCl", "CuInGaSe2"]
    x = torch.from_numpy(parse_compositions(formulas, "test").fractions).float()
    net.eval()
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i:i + 1]) for i in range(len(formulas))])
    assert torch.allclose(together, alone, atol=1e-5)


def test_messages_weighted_before_their_last_layer_equal_the_pairwise_messages():
    """attend applies the message MLP's last layer after the attention-weighted sum: the same function as
    weighting the messages of every pair (Goodall & Lee's form), padded neighbours included."""
    from lightning_modules.nets.roost import WeightedAttentionLayer, WeightedAttentionPooling, weighted_softmax

    torch.manual_seed(0)
    b, k, d, heads = 4, 5, 8, 3
    h, weights = torch.randn(b, k, d), torch.rand(b, k)
    mask = torch.ones(b, k, dtype=torch.bool)
    mask[0, 3:] = False
    weights = weights * mask
    layer = WeightedAttentionLayer(width=d, heads=heads, hidden=16)
    attention = weighted_softmax(layer.on_pairs(layer.gate, h), weights[:, None, :, None], layer.power,
                                 mask[:, None, :, None])
    messages = layer.on_pairs(layer.message, h).view(b, k, k, heads, d)
    pairwise = h + (attention.unsqueeze(-1) * messages).sum(dim=2).mean(dim=2)
    assert torch.allclose(layer(h, weights, mask), pairwise, atol=1e-5)
    pool = WeightedAttentionPooling(width=d, heads=heads, hidden=16)
    attention = weighted_softmax(pool.gate(h), weights[..., None], pool.power, mask[..., None])
    pairwise = (attention.unsqueeze(-1) * pool.message(h).view(b, k, heads, d)).sum(dim=1).mean(dim=1)
    assert torch.allclose(pool(h, weights, mask), pairwise, atol=1e-5)


def test_a_fit_starts_the_embeddings_from_the_datas_mat2vec_table(workdir):
    """The net loads no file: the data hand it the table when a fit starts (every ensemble member), and a
    checkpoint's rows come with its weights; the rows are fine-tuned unless the net keeps them fixed; without a
    datamodule that gives tables the fit says so."""
    import subprocess
    import sys

    import lightning.pytorch as pl

    from datamodules.composition import CompositionDataModule
    from lightning_modules.regression import PropertyRegressor

    code = "import sys, lightning_modules.nets.roost; print(any(m.startswith('datamodules') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    net = Roost(width=8, n_layers=1, heads=1, hidden=16, pool_heads=1, head=(16,))
    assert not net.embedding.weight.any()  # nothing until the data give it

    class AtFitStart(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            self.tables = [m.embedding.weight.detach().clone() for m in pl_module.members]

    seen = AtFitStart()
    module = PropertyRegressor(net, uncertainty="ensemble", ensemble_size=2)
    data = CompositionDataModule(dataset="ssub", features="fractions", split="kfold", skip_bad_rows=True)
    pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, fast_dev_run=1,
               callbacks=[seen]).fit(module, datamodule=data)
    table = CompositionDataModule.element_table("mat2vec")
    assert table.shape == (86, 200) and all(torch.equal(t, table) for t in seen.tables)
    assert not torch.equal(module.net.embedding.weight, table)  # then fine-tuned
    fixed = Roost(fine_tune_embedding=False, width=8, n_layers=1, heads=1, hidden=16, pool_heads=1, head=(16,))
    projection = fixed.project.weight.detach().clone()
    pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, fast_dev_run=1).fit(
        PropertyRegressor(fixed), datamodule=data)
    assert torch.equal(fixed.embedding.weight, table)  # the paper's fixed input features
    assert not torch.equal(fixed.project.weight, projection)  # the projection after them learns
    batch = next(iter(data.train_dataloader()))
    with pytest.raises(ValueError, match="starts from the element table 'mat2vec'"):
        pl.Trainer(logger=False, enable_checkpointing=False, fast_dev_run=1).fit(
            PropertyRegressor(Roost(width=8, n_layers=1, heads=1, hidden=16, pool_heads=1, head=(16,))),
            train_dataloaders=[batch])
