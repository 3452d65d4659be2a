"""The architectures: ElemNet as Table 3.1, IRNet/SRNet/plain as chapter 4."""

import pytest
import torch
from torch import nn

from lightning_modules.nets import ElemNet, IRNet, stack_sizes


def test_elemnet_table_3_1_layers_dropout_and_parameter_count():
    net = ElemNet()
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32, 1]
    assert len(linears) == 17
    # keep probabilities 0.8, 0.9, 0.7, 0.8 -> torch p 0.2, 0.1, 0.3, 0.2, after layers 4, 7, 10, 13
    drops = [(i, m.p) for i, m in enumerate(net.layers) if isinstance(m, nn.Dropout)]
    assert [round(p, 6) for _, p in drops] == [0.2, 0.1, 0.3, 0.2]
    widths = [86] + [m.out_features for m in linears]
    assert sum(p.numel() for p in net.parameters()) == sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert sum(p.numel() for p in net.parameters()) == 4_631_361
    assert net(torch.rand(7, 86)).shape == (7, 1)


def test_elemnet_he_initialisation_carries_the_input_through_17_layers():
    """Under torch's default initialisation the biases swamp the input: ElemNet's output barely depends on it."""
    torch.manual_seed(0)
    x = torch.rand(1024, 86) * (torch.rand(1024, 86) < 0.04)
    x = x / x.sum(1, keepdim=True).clamp_min(1e-9)
    spread = {init: ElemNet(init=init).eval()(x).std().item() for init in ("he", "pytorch")}
    assert spread["he"] > 1e-3 > 1e3 * spread["pytorch"], spread
    assert all((layer.bias == 0).all() for layer in ElemNet().layers if isinstance(layer, torch.nn.Linear))


def test_depths_have_the_requested_number_of_layers():
    for depth in (17, 24, 48):
        assert sum(n for _, n in stack_sizes(depth)) + 1 == depth
    assert stack_sizes(17) == [(1024, 4), (512, 3), (256, 3), (128, 3), (64, 2), (32, 1)]
    with pytest.raises(ValueError):
        stack_sizes(5)


@pytest.mark.parametrize("depth", [17, 24, 48])
@pytest.mark.parametrize("shortcut", ["individual", "stacked", "none"])
def test_irnet_variants_shapes_and_structure(depth, shortcut):
    net = IRNet(145, depth=depth, shortcut=shortcut)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    projections = [m for m in linears if m.bias is None]
    assert len(linears) - len(projections) == depth
    assert len([m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]) == depth - 1
    # a projection wherever the width changes under a shortcut: 145->1024 and each of 5 width changes
    assert len(projections) == (0 if shortcut == "none" else 6)
    identity_shortcuts = sum(1 for m in net.modules() if type(m).__name__ == "_Residual"
                             and isinstance(m.projection, nn.Identity))
    expected = {"individual": depth - 1 - 6, "stacked": 0, "none": 0}[shortcut]
    assert identity_shortcuts == expected
    net.eval()
    assert net(torch.randn(5, 145)).shape == (5, 1)


def test_individual_shortcut_adds_the_input():
    net = IRNet(4, stacks=[(4, 1)], shortcut="individual").eval()
    block = net.blocks[0]
    x = torch.randn(3, 4)
    torch.testing.assert_close(block(x), block.body(x) + x)


def test_homogenization_cnn_has_five_blocks_two_dense_layers_and_3_8m_parameters():
    from lightning_modules.nets import HomogenizationCNN

    net = HomogenizationCNN(51)
    assert sum(isinstance(m, nn.Conv3d) for m in net.modules()) == 5
    assert sum(isinstance(m, nn.MaxPool3d) for m in net.modules()) == 5
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [2048, 1024, 1]
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) - sum(
        p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm3d) for p in m.parameters()) == 3_801_505
    net.eval()
    assert net(torch.rand(2, 1, 51, 51, 51)).shape == (2, 1)
    with pytest.raises(ValueError, match="at least 32 voxels"):
        HomogenizationCNN(21)


def test_homogenization_field_cnn_averages_a_periodic_per_patch_response():
    """C11 is the element's mean of one number per patch: shifting the element by whole patches leaves it
    unchanged (every convolution is periodic), each element's answer is its own (no batch statistics mixed in
    training mode either), and an edge that is not a whole number of patches is refused."""
    from lightning_modules.nets import HomogenizationFieldCNN

    torch.manual_seed(0)
    net = HomogenizationFieldCNN(12, stem_channels=3, channels=4, stride=3, dilations=(1, 1), output_scale=10.0)
    assert net.receptive_field == 5  # patches a side: this element's 4, 5 and 3 and no fewer
    micro = (torch.rand(3, 1, 12, 15, 9) > 0.5).float()  # unequal edges: no axis mixed up
    with torch.no_grad():
        c11 = net(micro)
        assert c11.shape == (3, 1)
        torch.testing.assert_close(net(micro.roll((3, -6, 9), dims=(2, 3, 4))), c11)
        coarse = net.layers(micro)  # (B, 1, 4, 5, 3): one response per patch
        assert coarse.shape == (3, 1, 4, 5, 3)
        torch.testing.assert_close(c11, coarse.mean((1, 2, 3, 4))[:, None] * 10.0)
        for training in (False, True):
            net.train(training)
            torch.testing.assert_close(net(micro[1:2]), net(micro)[1:2])
    assert HomogenizationFieldCNN(51).receptive_field == 17  # the defaults see a whole 51³ element (17 patches)
    with pytest.raises(ValueError, match="not a whole number of 3-voxel patches"):
        HomogenizationFieldCNN(50)


def test_localization_cnn_reads_a_neighbourhood_as_channels():
    from lightning_modules.nets import LocalizationCNN

    net = LocalizationCNN(11)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 3  # two dense layers + the output
    assert net(torch.rand(5, 11, 11, 11)).shape == (5, 1)


@pytest.mark.parametrize("options", [{}, {"n_features": 9, "kernel_size": 5}, {"kernel_size": 2}, {"batch_norm": False}])
def test_localization_cnn_on_whole_elements_equals_every_neighbourhood(options):
    """A whole periodic element through the 3-D convolution form gives each voxel what its own k³ neighbourhood
    gives; in training mode too (batch norm then sees every voxel's map positions equally often)."""
    from lightning_modules.nets import LocalizationCNN
    from materials.microstructure import periodic_neighbourhoods

    torch.manual_seed(0)
    net = LocalizationCNN(**options)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):  # not the identity at init
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.normal_(), bn.bias.data.normal_()
    micro = (torch.rand(3, 13, 12, 15) > 0.5).to(torch.uint8)  # unequal edges: no axis mixed up
    per_element = micro[0].numel()
    rows = torch.arange(3 * per_element)
    windows = periodic_neighbourhoods(micro, rows // per_element, rows % per_element, net.n_features).float()
    for training in (False, True):
        net.train(training)
        with torch.no_grad():
            whole, each = net(micro[:, None].float()), net(windows)
        assert whole.shape == (3 * per_element, 1)
        torch.testing.assert_close(whole, each, rtol=1e-4, atol=1e-4)
    assert torch.equal(net.strain_field(micro).reshape(-1, 1), net(micro[:, None].float()))
    voxels = torch.stack([torch.randperm(per_element)[:7] for _ in range(3)])  # the dense layers at 7 voxels each
    for training in (False, True):
        net.train(training)
        with torch.no_grad():
            whole, some = net.strain_field(micro).reshape(3, -1), net((micro[:, None].float(), voxels))
        assert some.shape == (21, 1)
        torch.testing.assert_close(some, whole.gather(1, voxels).reshape(-1, 1), rtol=1e-5, atol=1e-5)


def test_precise_batchnorm_statistics_are_the_average_over_the_batches_at_fixed_weights():
    from lightning_modules.batchnorm import recompute_batchnorm_statistics

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.0), nn.Linear(4, 1)).eval()
    batches = [torch.randn(16, 3) * (1 + i) + i for i in range(5)]  # each batch its own scale and shift
    used = recompute_batchnorm_statistics(net, iter(batches + batches), net, n_batches=5)
    h = [net[0](b).detach() for b in batches]
    bn = net[1]
    assert used == 5 and not net.training and bn.momentum == 0.1 and int(bn.num_batches_tracked) == 5
    assert torch.allclose(bn.running_mean, torch.stack([x.mean(0) for x in h]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([x.var(0) for x in h]).mean(0), atol=1e-4)
    # the default running averages weight the last batches: far from the plain average here
    ema = nn.BatchNorm1d(4).train()
    for x in h:
        ema(x)
    assert not torch.allclose(ema.running_var, bn.running_var, rtol=0.1)
    assert recompute_batchnorm_statistics(nn.Linear(3, 1), iter(batches), lambda b: None, 5) == 0


def test_localization_field_cnn_is_periodic_sees_its_receptive_field_and_scores_chosen_voxels():
    """A periodic shift of the element shifts the strain field (circular padding); a voxel's strain changes with
    a voxel inside its receptive field and not with one outside; chosen voxels get the whole field's values."""
    from lightning_modules.nets import LocalizationFieldCNN

    torch.manual_seed(0)
    net = LocalizationFieldCNN(11, channels=4, dilations=(1, 2, 3)).eval()  # sees 13 voxels a side
    assert net.receptive_field == 13
    micro = (torch.rand(2, 1, 15, 16, 17) > 0.5).float()  # unequal edges: no axis mixed up
    with torch.no_grad():
        field = net(micro).reshape(2, 15, 16, 17)
        shifted = net(micro.roll((4, -3, 5), dims=(2, 3, 4))).reshape(2, 15, 16, 17)
        torch.testing.assert_close(shifted, field.roll((4, -3, 5), dims=(1, 2, 3)))
        for distance, changes in ((6, True), (7, False)):  # along x3, periodic: 7 and 17 - 7 = 10 are both out
            flipped = micro.clone()
            flipped[0, 0, 0, 0, distance] = 1 - flipped[0, 0, 0, 0, distance]
            moved = net(flipped).reshape(2, 15, 16, 17)
            assert (moved[0, 0, 0, 0] != field[0, 0, 0, 0]).item() is changes
        voxels = torch.randint(0, 15 * 16 * 17, (2, 9))
        torch.testing.assert_close(net((micro, voxels)).reshape(2, 9), field.reshape(2, -1).gather(1, voxels))
    with pytest.raises(ValueError, match="reads whole elements"):
        net(torch.rand(5, 11, 11, 11))
    with pytest.raises(ValueError, match="fewer than the neighbourhood of 11"):
        LocalizationFieldCNN(11, dilations=(1, 2))
