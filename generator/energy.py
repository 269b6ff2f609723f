"""The energies of Sec. 3 as small composable pieces, each returning one value per sample (B,).

Images are in [0, 1]. Regularizers are *means* over pixels (or patch entries) rather than
sums, so a weight means the same thing at 64 px and at 224 px; the authors' weights were
sums on a 0-255 scale divided by the init's variance, so ours are re-tuned (see
`generator.optimize.Settings`). Per-sample energies let the optimizer sum a whole batch for
one backward pass and still watch (and freeze) each problem on its own.
"""
from __future__ import annotations

import torch
from torch import Tensor

NORMALIZE_EPS = 1e-5  # added to an image's std before dividing by it (generator.prior.normalize_images)


def class_score(fc8: Tensor, targets: Tensor) -> Tensor:
    """-fc8[t] per sample: E_class's data term [10]. Pre-softmax, because maximizing the
    softmax can be done by pushing the *other* classes down instead of making a better t."""
    return -fc8.gather(1, targets.view(-1, 1)).squeeze(1)


def feature_inversion(pred: Tensor, target: Tensor) -> Tensor:
    """||phi(I) - phi0||^2 / ||phi0||^2 per sample: E_inv's data term [8], at pool5 or any
    trunk layer. Normalizing by ||phi0||^2 makes one weight fit every image and layer."""
    dims = tuple(range(1, pred.dim()))
    return (pred - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)


def feature_error(pred: Tensor, target: Tensor) -> Tensor:
    """||phi(I) - phi0|| / ||phi0|| per sample: the number reported for inversions (not squared)."""
    return feature_inversion(pred, target).sqrt()


def l2(images: Tensor, weight: float, centre: Tensor | float = 0.5) -> Tensor:
    """R_alpha ||I - centre||^2 (mean over pixels): keeps the image from drifting to saturated
    colours the data term does not care about. The authors' ||I||^2 is taken on Caffe's
    mean-subtracted input, so `centre` is the model's mean colour (broadcast (1,3,1,1))."""
    centre = torch.as_tensor(centre, dtype=images.dtype, device=images.device)
    return weight * _CentredSquare.apply(images, centre)


class _CentredSquare(torch.autograd.Function):
    """mean((x - c)^2) per sample with its gradient 2 (x - c) / N written out: two passes over
    the batch instead of autograd's five (it runs at every step of every problem)."""

    @staticmethod
    def forward(ctx, images: Tensor, centre: Tensor) -> Tensor:
        offset = images - centre
        ctx.save_for_backward(offset)
        return offset.pow(2).flatten(1).mean(1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (offset,) = ctx.saved_tensors
        return offset * (2.0 / offset[0].numel() * grad_out.view(-1, *[1] * (offset.dim() - 1))), None


def alpha_norm(images: Tensor, weight: float, alpha: float = 6.0, centre: Tensor | float = 0.5) -> Tensor:
    """Mahendran & Vedaldi's alpha-norm (alpha = 6): like L2 but nearly flat inside the range
    and steep at its ends, so it bounds the pixels without dimming the whole image."""
    return weight * (images - centre).abs().pow(alpha).flatten(1).mean(1)


def tv(images: Tensor, weight: float, beta: float = 2.0) -> Tensor:
    """R_beta ||grad I||^beta (beta = 2, mean over pixels): suppresses the high-frequency
    patterns a CNN responds to but natural images lack."""
    if beta == 2.0:
        return weight * _SquaredTV.apply(images)
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    grad_sq = dx[..., :-1, :].pow(2) + dy[..., :, :-1].pow(2)
    return weight * grad_sq.pow(beta / 2).flatten(1).mean(1)


class _SquaredTV(torch.autograd.Function):
    """mean(dx^2 + dy^2) per sample with its gradient written out. Autograd's version of the
    four slices costs a zero-filled batch-sized tensor per slice in the backward; this one
    fills one (~2x faster, and TV runs at every step of every problem)."""

    @staticmethod
    def forward(ctx, images: Tensor) -> Tensor:
        corner = images[..., :-1, :-1]
        dx = images[..., :-1, 1:] - corner
        dy = images[..., 1:, :-1] - corner
        ctx.save_for_backward(dx, dy)
        ctx.shape = images.shape
        return (dx.pow(2) + dy.pow(2)).flatten(1).mean(1)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        dx, dy = ctx.saved_tensors
        scale = (2.0 / dx[0].numel()) * grad_out.view(-1, 1, 1, 1)
        dx, dy = dx * scale, dy * scale
        grad = dx.new_zeros(ctx.shape)
        grad[..., :-1, 1:] += dx
        grad[..., 1:, :-1] += dy
        grad[..., :-1, :-1] -= dx + dy
        return grad


def patch_prior(patches: Tensor, matched: Tensor, weight: float) -> Tensor:
    """R_gamma sum_p ||I~_p - D~_p||^2 (mean over patch entries): the data-driven prior.

    `patches` are the globally normalized patches of the current image (B, P, D), differentiable;
    `matched` their nearest natural patches (held fixed between re-matches). Normalizing by the
    image's own mean/std lets patches match natural ones even while the global colour is wrong,
    and the gradient then pulls the colours toward the database's statistics (PAPER.md)."""
    return weight * (patches - matched).pow(2).flatten(1).mean(1)


def patch_prior_folded(normalized: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, entries: int, weight: float) -> Tensor:
    """`patch_prior` without cutting the image into patches: the same value and gradient.

    sum_p ||x_p - d_p||^2 = sum_pixels (coverage * x^2 - 2 * folded * x) + sum_p ||d_p||^2,
    where coverage counts the patches over each pixel and `folded` is the matched patches
    summed back onto the image (F.fold), both fixed between re-matches. Per step this costs a
    few passes over the pixels instead of an unfold (and its fold in the backward) of
    ~patch^2/stride^2 copies of the image. `normalized` (B,3,H,W), `coverage` (1 or B,1,H,W),
    `folded` (B,3,H,W), `matched_sq` (B,) and `entries` = P * D, the patch_prior mean's count."""
    dense = (coverage * normalized.pow(2) - 2 * folded * normalized).flatten(1).sum(1)
    return weight * (dense + matched_sq).clamp_min(0) / entries


def global_normalize(images: Tensor, eps: float = NORMALIZE_EPS) -> tuple[Tensor, Tensor]:
    """(images - mean) / (std + eps) per image (B,3,H,W) over all its values, and that std
    (B,1,1,1): the prior's global normalization (generator.prior explains why global)."""
    centred = images - images.mean((1, 2, 3), keepdim=True)
    # the unbiased std written out: Tensor.std is a slow single-pass kernel on CPU (11 ms on a
    # batch of 16 images at 224 px, half the prior's per-step cost)
    std = (centred.pow(2).sum((1, 2, 3), keepdim=True) / max(images[0].numel() - 1, 1)).sqrt()
    return centred / (std + eps), std


def patch_prior_normalized(images: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, entries: int,
                           weight: float, eps: float = NORMALIZE_EPS) -> Tensor:
    """`patch_prior_folded(normalize_images(images), ...)`: the prior on the raw image, its
    global normalization included, with the gradient written out. Autograd's version makes
    ~35 passes over the batch per step (the prior's biggest cost once matching is cheap);
    this makes ~18. Same value and gradient (tests/test_energy.py)."""
    return weight * _NormalizedFoldedPrior.apply(images, coverage, folded, matched_sq, eps) / entries


class _NormalizedFoldedPrior(torch.autograd.Function):
    """sum_pixels (c n^2 - 2 f n) + sum ||d_p||^2 with n = (x - mean(x)) / (std(x) + eps).

    With g = dE/dn = 2 (c n - f), the normalization's backward is
    dE/dx = (g - mean(g)) / (std + eps) - n * sum(g n) / ((N - 1) std), per image of N values."""

    @staticmethod
    def forward(ctx, images: Tensor, coverage: Tensor, folded: Tensor, matched_sq: Tensor, eps: float) -> Tensor:
        normalized, std = global_normalize(images, eps)
        residual = coverage * normalized - folded  # c n - f
        dense = ((residual - folded) * normalized).flatten(1).sum(1)  # sum (c n - 2 f) n
        ctx.save_for_backward(normalized, residual, std)
        ctx.count, ctx.eps = images[0].numel(), eps
        return (dense + matched_sq).clamp_min(0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        normalized, residual, std = ctx.saved_tensors
        g = residual * (2 * grad_out.view(-1, 1, 1, 1))
        g_mean = g.mean((1, 2, 3), keepdim=True)
        g_dot_n = (g * normalized).sum((1, 2, 3), keepdim=True)
        through_std = normalized * (g_dot_n / ((ctx.count - 1) * std.clamp_min(1e-12)))
        return (g - g_mean).div_(std + ctx.eps).sub_(through_std), None, None, None, None


def colour_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean (3,) and 3x3 covariance of all pixels of a set of images (N,3,H,W)."""
    pixels = images.permute(1, 0, 2, 3).reshape(3, -1).double()
    mean = pixels.mean(1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / max(pixels.shape[1] - 1, 1)


def colour_distance(image: Tensor, references: Tensor) -> float:
    """Distance between the colour statistics of an image (3,H,W) and of reference images
    (N,3,H,W): ||mu_a - mu_b||_2 + ||Sigma_a - Sigma_b||_F over RGB pixels in [0, 1].

    The paper's claim is that the patch prior fixes the *global colour* L2+TV gets wrong; the
    first two moments of the pixel distribution are the simplest number that sees that."""
    mean_a, cov_a = colour_stats(image.unsqueeze(0) if image.dim() == 3 else image)
    mean_b, cov_b = colour_stats(references)
    return float((mean_a - mean_b).norm() + (cov_a - cov_b).norm())
