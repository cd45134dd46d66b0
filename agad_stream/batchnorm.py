"""AdvProp auxiliary batch norms and Freeze-BN.

AGAD feeds three kinds of data through the same convolutions: normal samples,
pseudo-anomalies (reconstructions x̂ = G(x)) and, in supervised mode, labelled
anomalies. Mixing their statistics in one BatchNorm would blur what "normal"
looks like, so (following AdvProp) every BatchNorm gets an auxiliary twin with
its own running statistics and affine parameters, used only for
pseudo-anomalies, while labelled anomalies are normalised with the frozen
running statistics of the main BN (Freeze-BN) and never update them.

Networks are written with ordinary ``nn.BatchNorm*`` layers;
:func:`add_auxiliary_batchnorms` swaps them for :class:`DualBatchNorm` so a
user's own generator gets the same treatment.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Route = Literal["main", "aux", "frozen"]
ROUTES: tuple[Route, ...] = ("main", "aux", "frozen")


class DualBatchNorm(nn.Module):
    """A BatchNorm with an auxiliary twin and a switch saying which one normalises.

    ``main``: the ordinary BN, for normal data (the only one used at test time).
    ``aux``: own statistics and affine parameters, for pseudo-anomalies; with
    ``share_affine`` only the statistics are its own, so G cannot learn to fail on
    pseudo-anomalies through scales and shifts that test time never uses.
    ``frozen``: main BN's running statistics and affine parameters, statistics not updated.
    """

    def __init__(self, batchnorm: nn.modules.batchnorm._BatchNorm, share_affine: bool = False):
        super().__init__()
        self.main = batchnorm
        if share_affine:
            self.aux = type(batchnorm)(batchnorm.num_features, batchnorm.eps, batchnorm.momentum, affine=False)
        else:
            self.aux = copy.deepcopy(batchnorm)
        self.share_affine = share_affine
        self.route: Route = "main"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.route == "main":
            return self.main(x)
        if self.route == "aux":
            if self.share_affine:
                shape = (1, -1) + (1,) * (x.dim() - 2)
                return self.aux(x) * self.main.weight.view(shape) + self.main.bias.view(shape)
            return self.aux(x)
        bn = self.main
        return F.batch_norm(
            x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
            training=False, momentum=0.0, eps=bn.eps,
        )


def add_auxiliary_batchnorms(module: nn.Module, share_affine: bool = False) -> nn.Module:
    """Replace every BatchNorm inside ``module`` by a :class:`DualBatchNorm`, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, DualBatchNorm(child, share_affine))
        elif not isinstance(child, DualBatchNorm):
            add_auxiliary_batchnorms(child, share_affine)
    return module


@contextmanager
def bn_route(route: Route, *modules: nn.Module) -> Iterator[None]:
    """Within the block, every DualBatchNorm in ``modules`` normalises through ``route``."""
    if route not in ROUTES:
        raise ValueError(f"unknown batch-norm route {route!r}; expected one of {ROUTES}")
    layers = [m for module in modules for m in module.modules() if isinstance(m, DualBatchNorm)]
    previous = [layer.route for layer in layers]
    for layer in layers:
        layer.route = route
    try:
        yield
    finally:
        for layer, old in zip(layers, previous):
            layer.route = old
