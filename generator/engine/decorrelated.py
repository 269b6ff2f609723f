"""Decorrelated colour, optionally in a Fourier basis: Lucid's `image(fft=True, decorrelate=True)`.

Adam moves every coordinate of its parameters by about the same step. In raw pixels that makes
white noise: as much high-frequency, out-of-gamut colour as anything else, which the network
happily reads and nobody else does. Here the coordinates are ones in which natural images are
roughly white: colour along the principal axes of photo colours (scaled by their spread), and
space as Fourier coefficients scaled by 1/frequency^decay (photos' amplitude spectrum). An equal
step per coordinate then changes an image the way photos vary, and the picture has to be
bent on purpose to carry high-frequency detail. A sigmoid keeps the image in (0, 1).

Same protocol as `params.Pixels`: `init(images) -> params` (exact up to the sigmoid's range),
`image(params) -> images` (differentiable), `after_step(params)`.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Symmetric square root of the RGB covariance of 300 Imagenette train photos (30 a class, 64 px),
# scaled so its largest column has norm 1: its eigenvectors are the photos' colour axes
# (luminance, then blue-yellow, then red-green), its eigenvalues their spreads' square roots.
COLOUR_SQRT = torch.tensor([
    [0.7367, 0.4479, 0.3153],
    [0.4479, 0.6512, 0.4666],
    [0.3153, 0.4666, 0.8264],
])


def spectrum_scale(size: int, decay: float) -> Tensor:
    """(size, size // 2 + 1) weights 1/max(|f|, 1/size)^decay of the real FFT's coefficients,
    scaled to root-mean-square 1 so a step in params moves pixels as much as a step in Pixels."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    scale = 1.0 / torch.sqrt(fx * fx + fy * fy).clamp(min=1.0 / size) ** decay
    return scale / scale.pow(2).mean().sqrt()


class Decorrelated:
    """Images as sigmoid(gain * colour @ irfft(scale * spectrum)), or without the Fourier step.

    `gain` sets how far a unit of params moves a mid-grey pixel (the sigmoid's slope there is
    gain / 4), so the engine's learning rate means about the same as for raw pixels."""

    def __init__(self, fourier: bool = True, decay: float = 1.0, gain: float = 4.0, eps: float = 1e-3,
                 octaves: int = 1, iterations: int = 0) -> None:
        self.fourier, self.decay, self.gain, self.eps = fourier, decay, gain, eps
        self.octaves, self.iterations, self.step = octaves, iterations, 0
        self._scales: dict[tuple[int, torch.device], Tensor] = {}

    def _scale(self, size: int, device: torch.device) -> Tensor:
        key = (size, device)
        if key not in self._scales:
            self._scales[key] = spectrum_scale(size, self.decay).to(device)
        return self._scales[key]

    def init(self, images: Tensor) -> Tensor:
        """Params whose image is `images` (B, 3, S, S), clamped to [eps, 1 - eps]."""
        images = images.detach().float().clamp(self.eps, 1 - self.eps)
        coloured = torch.logit(images) / self.gain
        mix = torch.linalg.inv(COLOUR_SQRT.to(images.device))
        signal = torch.einsum("ij,bjhw->bihw", mix, coloured)
        if not self.fourier:
            return signal.contiguous()
        spectrum = torch.fft.rfft2(signal, norm="ortho") / self._scale(images.shape[-1], images.device)
        return torch.view_as_real(spectrum).contiguous()

    def open_frequencies(self, size: int, device: torch.device) -> Tensor | None:
        """Coarse to fine: the (size, size // 2 + 1) 0/1 mask of the frequencies free at this step.
        Octave o of n (an equal share of the iterations) frees |f| <= Nyquist / 2^(n - 1 - o), as if
        the image were optimized at 1/2^(n - 1 - o) of its side and then upsampled. None: all free."""
        if self.octaves <= 1 or not self.fourier or not self.iterations:
            return None
        octave = min(self.step * self.octaves // self.iterations, self.octaves - 1)
        if octave == self.octaves - 1:
            return None
        fy = torch.fft.fftfreq(size, device=device).view(-1, 1)
        fx = torch.fft.rfftfreq(size, device=device).view(1, -1)
        highest = 0.5 / 2 ** (self.octaves - 1 - octave)
        free: Tensor = ((fy.abs() <= highest) & (fx <= highest)).float()
        return free

    def image(self, params: Tensor) -> Tensor:
        signal = params
        if self.fourier:
            size = params.shape[2]
            scale = self._scale(size, params.device)
            free = self.open_frequencies(size, params.device)
            spectrum = torch.view_as_complex(params) * (scale if free is None else scale * free)
            signal = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho")
        # the colour mix as one batched (3 x 3) @ (3 x pixels) product with the gain folded in:
        # einsum's permuted copies and the separate scaling pass cost more than the product
        mix = (self.gain * COLOUR_SQRT).to(params.device)
        coloured = torch.matmul(mix, signal.flatten(2)).view(signal.shape)
        return torch.sigmoid(coloured)

    @torch.no_grad()
    def after_step(self, params: Tensor) -> None:
        """Count the step (coarse to fine); every params value is a valid image, nothing to project."""
        self.step += 1
