import torch
from torch import nn

from agad_stream.batchnorm import DualBatchNorm, add_auxiliary_batchnorms, bn_route
from agad_stream.networks import Discriminator, EncoderDecoder
from agad_stream.training import AGADTrainer, TrainingConfig, init_weights


def running_stats(module: nn.Module, which: str) -> list[torch.Tensor]:
    return [getattr(m, which).running_mean.clone() for m in module.modules() if isinstance(m, DualBatchNorm)]


def changed(before: list[torch.Tensor], after: list[torch.Tensor]) -> bool:
    return any(not torch.equal(b, a) for b, a in zip(before, after))


def make_trainer(**config):
    torch.manual_seed(0)
    G = add_auxiliary_batchnorms(EncoderDecoder(1, 1, (64,), channels=(4, 8, 16), latent_dim=8))
    D = add_auxiliary_batchnorms(Discriminator(1, 1, (64,), channels=(4, 8, 16)))
    init_weights(G)
    init_weights(D)
    return AGADTrainer(G, D, TrainingConfig(**config))


def test_auxiliary_statistics_change_only_on_pseudo_anomaly_passes():
    G = make_trainer().G
    G.train()
    aux_before = running_stats(G, "aux")
    G(torch.randn(8, 1, 64))
    assert not changed(aux_before, running_stats(G, "aux")), "a normal pass touched the auxiliary BN"
    main_before = running_stats(G, "main")
    with bn_route("aux", G):
        G(torch.randn(8, 1, 64))
    assert changed(aux_before, running_stats(G, "aux"))
    assert not changed(main_before, running_stats(G, "main")), "a pseudo-anomaly pass touched the main BN"


def test_freeze_bn_pass_leaves_running_statistics_alone():
    G = make_trainer().G
    G.train()
    main_before, aux_before = running_stats(G, "main"), running_stats(G, "aux")
    with bn_route("frozen", G):
        out = G(torch.randn(8, 1, 64) * 5 + 3)
    out.sum().backward()
    assert not changed(main_before, running_stats(G, "main"))
    assert not changed(aux_before, running_stats(G, "aux"))


def test_frozen_route_normalises_with_running_statistics():
    bn = DualBatchNorm(nn.BatchNorm1d(3))
    bn.main.running_mean.fill_(2.0)
    bn.main.running_var.fill_(4.0)
    bn.train()
    bn.route = "frozen"
    x = torch.full((4, 3, 5), 6.0)
    expected = (6.0 - 2.0) / (4.0 + bn.main.eps) ** 0.5
    assert torch.allclose(bn(x), torch.full_like(x, expected), atol=1e-4)


def test_training_step_routes_each_kind_of_data_to_its_batchnorm():
    trainer = make_trainer()
    main_before, aux_before = running_stats(trainer.G, "main"), running_stats(trainer.G, "aux")
    trainer.step(torch.randn(8, 1, 64), torch.randn(4, 1, 64))
    assert changed(main_before, running_stats(trainer.G, "main"))
    assert changed(aux_before, running_stats(trainer.G, "aux"))


def test_without_aux_bn_the_auxiliary_statistics_never_move():
    trainer = make_trainer(aux_bn=False)
    aux_before = running_stats(trainer.G, "aux") + running_stats(trainer.D, "aux")
    trainer.step(torch.randn(8, 1, 64), torch.randn(4, 1, 64))
    assert not changed(aux_before, running_stats(trainer.G, "aux") + running_stats(trainer.D, "aux"))


def test_eval_mode_uses_main_batchnorm_whatever_the_route():
    bn = DualBatchNorm(nn.BatchNorm1d(2))
    bn.aux.running_mean.fill_(100.0)
    bn.eval()
    x = torch.randn(3, 2, 4)
    with bn_route("aux", bn):
        assert torch.equal(bn(x), bn.main(x))


def test_frozen_pseudo_anomaly_mode_never_moves_the_auxiliary_statistics():
    trainer = make_trainer(aux_bn_mode="frozen")
    aux_before = running_stats(trainer.G, "aux") + running_stats(trainer.D, "aux")
    trainer.step(torch.randn(8, 1, 64))
    assert not changed(aux_before, running_stats(trainer.G, "aux") + running_stats(trainer.D, "aux"))


def test_shared_affine_auxiliary_batchnorm_uses_the_main_scale_and_shift():
    bn = DualBatchNorm(nn.BatchNorm1d(3), share_affine=True)
    assert not bn.aux.affine
    bn.main.weight.data.fill_(2.0)
    bn.main.bias.data.fill_(1.0)
    bn.train()
    bn.route = "aux"
    x = torch.randn(6, 3, 5)
    expected = nn.functional.batch_norm(x, None, None, training=True) * 2.0 + 1.0
    assert torch.allclose(bn(x), expected, atol=1e-5)


def test_a_shared_affine_model_initialises_and_trains():
    from agad_stream import AGAD

    X = torch.randn(64, 1, 32).numpy()
    model = AGAD(aux_bn_mode="shared-affine", channels=(4, 8, 16), latent_dim=4, max_steps=3, verbose=False,
                 device="cpu", random_state=0).fit(X)
    assert all(not m.aux.affine for m in model.generator_.modules() if isinstance(m, DualBatchNorm))
