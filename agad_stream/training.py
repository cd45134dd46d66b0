"""One AGAD training step, in the order of the paper's Algorithm 1.

The trainer owns G, D and their optimisers; it sees tensors only (already
normalised, already on the device). Batch composition, normalisation and the
step budget belong to the estimator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agad_stream.batchnorm import bn_route
from agad_stream.losses import (
    bce_fake, l_a_margin, l_a_reciprocal, l_a_relative_margin, l_adcon, l_adcon_hinge, l_adv, l_con, l_d, l_lat,
)

ANOMALY_LOSSES = ("reciprocal", "margin", "relative-margin")
AUX_BN_MODES = ("separate", "shared-affine", "frozen")
ADCON_FORMS = ("paper", "hinge")
UPDATE_ORDERS = ("g_first", "d_first")


@dataclass(frozen=True)
class TrainingConfig:
    """Loss weights (λ = 0 switches a term off) and the switches of the paper's ablations.

    ``adcon``: "paper" is L_adcon = -||x̂ - x̂'||_1, unbounded below; "hinge" stops
    rewarding G once x̂' differs from x̂ by ``adcon_margin`` (in standard deviations of
    the normalised data), so the term cannot take over G's loss.
    ``adcon_warmup_steps``: λ_adcon ramps up linearly over these first steps.
    ``aux_bn_mode``: "frozen" routes pseudo-anomalies through the main BN's running
    statistics, so G can fail on them only in ways that also hold at test time.
    ``update_order``: "g_first" is Algorithm 1 (G, then D on the same forward passes,
    as in GANomaly); "d_first" updates D, then G against the updated D.
    ``anomaly_loss``/``anomaly_margin``: L_a for labelled anomalies. "margin": the batch's mean
    anomaly error pushed up to ``anomaly_margin`` standard deviations of the data;
    "relative-margin": each anomaly's error pushed up to ``anomaly_margin`` times the batch's
    mean normal error; "reciprocal": Algorithm 1 read literally (no margin).
    """

    lambda_adv: float = 1.0
    lambda_con: float = 50.0
    lambda_adcon: float = 15.0
    lambda_lat: float = 5.0
    aux_bn: bool = True
    aux_bn_mode: str = "separate"
    freeze_bn: bool = True
    adcon: str = "hinge"
    adcon_margin: float = 0.1
    adcon_warmup_steps: int = 0
    update_order: str = "g_first"
    anomaly_loss: str = "margin"
    anomaly_margin: float = 1.0
    lr: float = 2e-4
    beta1: float = 0.5
    d_reinit_below: float = 1e-5

    def __post_init__(self):
        for name, allowed in (("anomaly_loss", ANOMALY_LOSSES), ("adcon", ADCON_FORMS), ("update_order", UPDATE_ORDERS),
                              ("aux_bn_mode", AUX_BN_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("lambda_adv", "lambda_con", "lambda_adcon", "lambda_lat", "lr", "adcon_margin", "adcon_warmup_steps",
                     "anomaly_margin"):
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
            if m.affine:   # an auxiliary BN that shares the main one's scale and shift has none
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
            m.reset_running_stats()


@dataclass
class Reconstructions:
    """G's passes of one step: x̂ = G(x), x̂' = G(x̂), and for labelled anomalies G(x_a), G(G(x_a))."""

    x: torch.Tensor
    x_hat: torch.Tensor
    x_hat2: torch.Tensor | None
    x_a: torch.Tensor | None = None
    x_hat_a: torch.Tensor | None = None
    x_hat2_a: torch.Tensor | None = None


class AGADTrainer:
    def __init__(self, generator: nn.Module, discriminator: nn.Module, config: TrainingConfig):
        self.G, self.D, self.config = generator, discriminator, config
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=(config.beta1, 0.999))
        self.opt_d = self._new_d_optimizer()
        self.d_reinitialisations = 0
        self.steps = 0
        self._pseudo = ("frozen" if config.aux_bn_mode == "frozen" else "aux") if config.aux_bn else "main"
        self._anomaly = "frozen" if config.freeze_bn else "main"

    def _new_d_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.D.parameters(), lr=self.config.lr, betas=(self.config.beta1, 0.999))

    def lambda_adcon_now(self) -> float:
        """λ_adcon after the linear warm-up."""
        c = self.config
        if c.adcon_warmup_steps and self.steps < c.adcon_warmup_steps:
            return c.lambda_adcon * self.steps / c.adcon_warmup_steps
        return c.lambda_adcon

    def step(self, x: torch.Tensor, x_a: torch.Tensor | None = None) -> dict[str, float]:
        """One update of G and D on normal samples ``x`` and labelled anomalies ``x_a``."""
        self.G.train()
        self.D.train()
        # Lines 3-4: reconstruct x, then the pseudo-anomaly x̂ (auxiliary BN), then any labelled anomalies.
        r = self._reconstruct(x, x_a)

        if self.config.update_order == "g_first":
            # D's parameters do not change in G's update, so one set of D passes serves both:
            # G's loss (line 10) and D's loss on the detached-in-effect fakes (line 5).
            out = self._discriminate(r)
            loss_g, report = self._generator_loss(r, out)
            loss_d = self._discriminator_loss(out)
            self._gradients(self.opt_g, loss_g, self.G, retain_graph=True)
            self._gradients(self.opt_d, loss_d, self.D)
            self.opt_g.step()
            self.opt_d.step()
        else:
            loss_d = self._discriminator_loss(self._discriminate(r, detach_fakes=True))
            self._gradients(self.opt_d, loss_d, self.D)
            self.opt_d.step()
            loss_g, report = self._generator_loss(r, self._discriminate(r))
            self._gradients(self.opt_g, loss_g, self.G)
            self.opt_g.step()

        # As in GANomaly: a discriminator that has won outright gives G no signal; start it afresh.
        if loss_d.item() < self.config.d_reinit_below:
            init_weights(self.D)
            self.opt_d = self._new_d_optimizer()
            self.d_reinitialisations += 1
        self.steps += 1
        report.update(L_D=loss_d.item(), L_G=loss_g.item())
        return report

    def _reconstruct(self, x: torch.Tensor, x_a: torch.Tensor | None) -> Reconstructions:
        c = self.config
        x_hat = self.G(x)
        x_hat2 = None
        if c.lambda_adcon:
            with bn_route(self._pseudo, self.G):
                x_hat2 = self.G(x_hat)
        r = Reconstructions(x, x_hat, x_hat2)
        if x_a is not None and len(x_a):
            with bn_route(self._anomaly, self.G):
                r.x_a, r.x_hat_a = x_a, self.G(x_a)
                if c.anomaly_loss == "reciprocal":
                    r.x_hat2_a = self.G(r.x_hat_a)
        return r

    def _discriminate(self, r: Reconstructions, detach_fakes: bool = False) -> dict[str, torch.Tensor]:
        """D's outputs: y, z = D(x); ŷ, ẑ = D(x̂) (auxiliary BN); and for labelled anomalies D(x_a), D(G(x_a))."""
        def fake(t: torch.Tensor) -> torch.Tensor:
            return t.detach() if detach_fakes else t

        out = {}
        out["y"], out["z"] = self.D(r.x)
        with bn_route(self._pseudo, self.D):
            out["y_hat"], out["z_hat"] = self.D(fake(r.x_hat))
        if r.x_a is not None:
            with bn_route(self._anomaly, self.D):
                out["y_a"], out["z_a"] = self.D(r.x_a)
                if self.config.anomaly_loss == "reciprocal" and not detach_fakes:
                    out["y_hat_a"], out["z_hat_a"] = self.D(r.x_hat_a)
        return out

    def _discriminator_loss(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Line 5. Real: x. Fake: the pseudo-anomaly x̂ and the labelled anomalies x_a."""
        loss_d = l_d(out["y"], out["y_hat"])
        if "y_a" in out:
            loss_d = loss_d + bce_fake(out["y_a"])
        return loss_d

    def _generator_loss(self, r: Reconstructions, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Lines 6-9: L_n on normal data; with labelled anomalies L = (n·L_n + a·L_a)/(n + a)."""
        c = self.config
        lambda_adcon = self.lambda_adcon_now()
        adcon = l_adcon if c.adcon == "paper" else (lambda a, b: l_adcon_hinge(a, b, c.adcon_margin))
        z = out["z"].detach()
        terms = {
            "L_adv": (c.lambda_adv, l_adv(out["y_hat"])),
            "L_con": (c.lambda_con, l_con(r.x, r.x_hat)),
            "L_adcon": (lambda_adcon, adcon(r.x_hat, r.x_hat2) if r.x_hat2 is not None else torch.zeros(())),
            "L_lat": (c.lambda_lat, l_lat(z, out["z_hat"])),
        }
        weighted = {name: weight * value for name, (weight, value) in terms.items() if weight}
        L_n = sum(weighted.values())
        loss_g = L_n
        report = {name: float(value.detach()) for name, (_, value) in terms.items()}
        magnitude = sum(abs(float(v.detach())) for v in weighted.values()) or 1.0
        report.update({f"share_{name}": abs(float(v.detach())) / magnitude for name, v in weighted.items()})

        if r.x_a is not None:
            if c.anomaly_loss == "reciprocal":
                L_a = l_a_reciprocal(out["y_hat_a"], r.x_hat_a, r.x_hat2_a, out["z_a"].detach(), out["z_hat_a"],
                                     c.lambda_adv, c.lambda_adcon, c.lambda_lat)
            elif c.anomaly_loss == "margin":
                L_a = l_a_margin(r.x_a, r.x_hat_a, c.lambda_con, c.anomaly_margin)
            else:
                L_a = l_a_relative_margin(r.x, r.x_hat, r.x_a, r.x_hat_a, c.lambda_con, c.anomaly_margin)
            n, a = len(r.x), len(r.x_a)
            loss_g = (n * L_n + a * L_a) / (n + a)
            report["L_a"] = float(L_a.detach())
        return loss_g, report

    @staticmethod
    def _gradients(optimizer: torch.optim.Optimizer, loss: torch.Tensor, network: nn.Module,
                   retain_graph: bool = False) -> None:
        """Gradients of ``loss`` for ``network``'s parameters only (G's loss must not train D, and back)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[p for p in network.parameters() if p.requires_grad], retain_graph=retain_graph)
