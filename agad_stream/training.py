"""One AGAD training step, in the order of the paper's Algorithm 1.

The trainer owns G, D and their optimisers; it sees tensors only (already
normalised, already on the device). Batch composition, normalisation and
epochs belong to the estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agad_stream.batchnorm import bn_route
from agad_stream.losses import bce_fake, l_a_margin, l_a_reciprocal, l_adcon, l_adv, l_con, l_d, l_lat

ANOMALY_LOSSES = ("reciprocal", "margin")


@dataclass(frozen=True)
class TrainingConfig:
    """Loss weights (λ = 0 switches a term off) and the switches of the paper's ablations."""

    lambda_adv: float = 1.0
    lambda_con: float = 50.0
    lambda_adcon: float = 15.0
    lambda_lat: float = 5.0
    aux_bn: bool = True
    freeze_bn: bool = True
    anomaly_loss: str = "reciprocal"
    anomaly_margin: float = 1.0
    lr: float = 2e-4
    beta1: float = 0.5
    d_reinit_below: float = 1e-5

    def __post_init__(self):
        if self.anomaly_loss not in ANOMALY_LOSSES:
            raise ValueError(f"anomaly_loss must be one of {ANOMALY_LOSSES}, got {self.anomaly_loss!r}")
        for name in ("lambda_adv", "lambda_con", "lambda_adcon", "lambda_lat", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02), BN scale ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()


class AGADTrainer:
    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: TrainingConfig):
        self.G, self.D, self.config = generator, discriminator, config
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
        self.opt_d = self._new_d_optimizer()
        self.d_reinitialisations = 0

    def _new_d_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.D.parameters(), lr=self.config.lr, betas=(self.config.beta1, 0.999))

    def step(self, x: torch.Tensor, x_a: torch.Tensor | None = None) -> dict[str, float]:
        """One update of D then G on normal samples ``x`` and labelled anomalies ``x_a``."""
        c = self.config
        pseudo = "aux" if c.aux_bn else "main"
        anomaly = "frozen" if c.freeze_bn else "main"
        has_anomalies = x_a is not None and len(x_a) > 0
        self.G.train()
        self.D.train()

        # Lines 3-4: reconstruct x, then reconstruct the pseudo-anomaly x̂ (auxiliary BN).
        x_hat = self.G(x)
        if c.lambda_adcon:
            with bn_route(pseudo, self.G):
                x_hat2 = self.G(x_hat)
        if has_anomalies:
            with bn_route(anomaly, self.G):
                x_hat_a = self.G(x_a)
                if c.anomaly_loss == "reciprocal":
                    x_hat2_a = self.G(x_hat_a)

        # Line 5: update D. Real: x. Fake: the pseudo-anomaly x̂ and the labelled anomalies x_a.
        y, _ = self.D(x)
        with bn_route(pseudo, self.D):
            y_hat, _ = self.D(x_hat.detach())
        loss_d = l_d(y, y_hat)
        if has_anomalies:
            with bn_route(anomaly, self.D):
                y_a, _ = self.D(x_a)
            loss_d = loss_d + bce_fake(y_a)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # Lines 6-8: L_n = λ_adv·L_adv + λ_con·L_con + λ_adcon·L_adcon + λ_lat·L_lat on normal data.
        with torch.no_grad():
            _, z = self.D(x)
        with bn_route(pseudo, self.D):
            y_hat, z_hat = self.D(x_hat)
        terms = {
            "L_adv": (c.lambda_adv, l_adv(y_hat)),
            "L_con": (c.lambda_con, l_con(x, x_hat)),
            "L_adcon": (c.lambda_adcon, l_adcon(x_hat, x_hat2) if c.lambda_adcon else torch.zeros(())),
            "L_lat": (c.lambda_lat, l_lat(z, z_hat)),
        }
        L_n = sum(weight * value for weight, value in terms.values() if weight)
        loss_g = L_n

        # Line 9: L_a on labelled anomalies; a mixed batch uses L = y·L_a + (1 - y)·L_n per sample.
        if has_anomalies:
            if c.anomaly_loss == "reciprocal":
                with torch.no_grad(), bn_route(anomaly, self.D):
                    _, z_a = self.D(x_a)
                with bn_route(anomaly, self.D):
                    y_hat_a, z_hat_a = self.D(x_hat_a)
                L_a = l_a_reciprocal(y_hat_a, x_hat_a, x_hat2_a, z_a, z_hat_a,
                                     c.lambda_adv, c.lambda_adcon, c.lambda_lat)
            else:
                L_a = l_a_margin(x_a, x_hat_a, c.lambda_con, c.anomaly_margin)
            n, a = len(x), len(x_a)
            loss_g = (n * L_n + a * L_a) / (n + a)

        # Line 10: update G.
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()

        # As in GANomaly: a discriminator that has won outright gives G no signal; start it afresh.
        if loss_d.item() < c.d_reinit_below:
            init_weights(self.D)
            self.opt_d = self._new_d_optimizer()
            self.d_reinitialisations += 1

        report = {name: float(value.detach()) for name, (_, value) in terms.items()}
        report.update(L_D=loss_d.item(), L_G=loss_g.item())
        if has_anomalies:
            report["L_a"] = float(L_a.detach())
        return report
