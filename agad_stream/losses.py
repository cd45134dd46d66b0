"""AGAD's loss terms, named as in the paper (Shi & Zhang 2023, Section 3 and Algorithm 1).

Notation: x a normal sample, x̂ = G(x) its reconstruction (the pseudo-anomaly),
x̂' = G(x̂) the reconstruction of the pseudo-anomaly, (y, z) = D(x) and
(ŷ, ẑ) = D(x̂) the discriminator's logit and features. Every term is a batch mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPSILON = 1e-6


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def l_adv(y_hat: torch.Tensor) -> torch.Tensor:
    """L_adv: G wants D to take its reconstruction x̂ for real."""
    return bce_real(y_hat)


def l_con(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """L_con = ||x - x̂||_1: reconstruct normal data well."""
    return (x - x_hat).abs().mean()


def l_adcon(x_hat: torch.Tensor, x_hat2: torch.Tensor) -> torch.Tensor:
    """L_adcon = -||x̂ - x̂'||_1: minimising it makes G FAIL to reconstruct the pseudo-anomaly."""
    return -(x_hat - x_hat2).abs().mean()


def l_adcon_hinge(x_hat: torch.Tensor, x_hat2: torch.Tensor, margin: float) -> torch.Tensor:
    """Bounded L_adcon = mean over samples of max(0, m - ||x̂ - x̂'||_1), in [0, m].

    The paper's -||x̂ - x̂'||_1 has no floor: G can drive it down without limit by making
    its second pass (through the auxiliary BN) explode, until the term outweighs L_con.
    With a hinge, a pseudo-anomaly that is already reconstructed badly enough (by
    ``margin``, in units of the normalised data) earns G nothing more.
    """
    per_sample = (x_hat - x_hat2).abs().flatten(1).mean(dim=1)
    return F.relu(margin - per_sample).mean()


def l_lat(z: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
    """L_lat = ||D_z(x) - D_z(x̂)||_2, as the mean squared feature difference (GANomaly's form)."""
    return (z - z_hat).pow(2).mean()


def l_d(y_real: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: BCE(D(x), real) + BCE(D(x̂), fake)."""
    return bce_real(y_real) + bce_fake(y_fake)


def l_a_reciprocal(
    y_hat_a: torch.Tensor,
    x_hat_a: torch.Tensor,
    x_hat2_a: torch.Tensor,
    z_a: torch.Tensor,
    z_hat_a: torch.Tensor,
    lambda_adv: float,
    lambda_adcon: float,
    lambda_lat: float,
) -> torch.Tensor:
    """L_a of Algorithm 1, line 9, read literally: λ_adv/ℓ_adv(ŷ, fake) + λ_adcon/ℓ_adcon(x̂, x̂') + λ_lat/ℓ_lat(z, ẑ).

    Our reading of the paper: for a labelled anomaly x_a the paper wants the
    opposite of each normal-data objective, and writes reciprocals instead of
    negations for a smooth, bounded-below curve. Each ℓ is the positive
    distance (BCE, L1, squared L2) as a batch mean over the anomalies, and
    ε = 1e-6 keeps the denominator positive. There is no L_con for anomalies.
    """
    terms = [
        (lambda_adv, bce_fake(y_hat_a)),
        (lambda_adcon, (x_hat_a - x_hat2_a).abs().mean()),
        (lambda_lat, (z_a - z_hat_a).pow(2).mean()),
    ]
    return sum((w / (loss + EPSILON) for w, loss in terms if w), torch.zeros((), device=x_hat_a.device))


def l_a_margin(
    x_a: torch.Tensor, x_hat_a: torch.Tensor, lambda_con: float, margin: float
) -> torch.Tensor:
    """Alternative L_a: push the anomaly's reconstruction error ||x_a - G(x_a)||_1 up to ``margin``.

    A hinge is bounded, so unlike a plain negated error it cannot run away
    to infinity and wreck the reconstruction of normal data.
    """
    return lambda_con * F.relu(margin - (x_a - x_hat_a).abs().mean())


def l_a_relative_margin(
    x: torch.Tensor, x_hat: torch.Tensor, x_a: torch.Tensor, x_hat_a: torch.Tensor, lambda_con: float, ratio: float
) -> torch.Tensor:
    """L_a relative to the normal windows: push EACH anomaly's error ||x_a - G(x_a)||_1 up to
    ``ratio`` times the batch's mean normal error ||x - G(x)||_1 (a constant here, detached).

    An absolute margin is met by anomalies that are already far from normal in the data's own
    units (ECG's PVCs) while G reconstructs them well; a ratio to the normal error keeps asking
    until they stand out from what G gets wrong on normal windows. Per window, so one very
    anomalous window cannot satisfy the margin for the others.
    """
    normal_error = (x - x_hat).detach().abs().mean()
    per_anomaly = (x_a - x_hat_a).abs().flatten(1).mean(dim=1)
    return lambda_con * F.relu(ratio * normal_error - per_anomaly).mean()
