"""Dense optical flow with no weights: pyramidal Lucas-Kanade in pure torch.

Each pixel solves the 2x2 least-squares system of brightness constancy over a Gaussian window,

    [Sxx Sxy] [du]     [Sxt]
    [Sxy Syy] [dv] = - [Syt],     S.. = G * (I. I.),

coarse to fine: the flow of a coarser level is upsampled, frame t+1 is warped back by it, and only the
remaining small motion is solved for, a few times per level. Each halving of the frame halves the motion,
so three levels follow ~8 px/frame over large textured regions; small fast objects in large frames are
followed better with four.

A small constant `_EPS` is added to the diagonal of the structure tensor (Tikhonov): where the window has
no texture (flat backgrounds, the inside of a flat object) the update falls to zero instead of to noise,
so such pixels keep the motion seen at the coarser level, and a static video gets exactly zero flow.
Two details carry most of the subpixel accuracy: the warp is bicubic (bilinear blurs a half-pixel shift,
which moves the fixed point of the iterations: ~0.1 px mean error instead of ~0.03 on a smooth texture),
and a 3x3 median of the flow after every update.

Everything is batched over the [B * (T - 1)] frame pairs; no Python loop touches a pixel.
"""

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)  # Rec. 601
# Squared intensity gradient (luma in [0, 1], per pixel) below which a window counts as textureless:
# a gradient of 0.01/px is ~2.5 grey levels per pixel.
_EPS = 1e-4
_MIN_SIDE = 8  # the coarsest level keeps at least this many pixels per side, or LK sees only borders
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # (/16) pre-smoothing and anti-aliasing before each halving
_DERIVATIVE = (1.0, -8.0, 0.0, 8.0, -1.0)  # 5-point central difference (/12): exact for cubics


def _separable(x: torch.Tensor, kernel: torch.Tensor, axis: str) -> torch.Tensor:
    """Correlate every channel of x [N, C, H, W] with a 1-D kernel along 'x' or 'y', edges replicated."""
    n, c, h, w = x.shape
    p = len(kernel) // 2
    x = x.reshape(n * c, 1, h, w)
    if axis == "x":
        x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    else:
        x = F.conv2d(F.pad(x, (0, 0, p, p), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.reshape(n, c, h, w)


def _smooth(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return _separable(_separable(x, kernel, "x"), kernel, "y")


def _gradients(x: torch.Tensor, derivative: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _separable(x, derivative, "x"), _separable(x, derivative, "y")


def _warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample image [N, 1, H, W] at x + flow(x): -> (warped [N, 1, H, W], inside [N, 1, H, W] 0/1)."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=image.device, dtype=image.dtype),
        torch.arange(w, device=image.device, dtype=image.dtype),
        indexing="ij",
    )
    x = xs + flow[:, 0]  # [N, H, W] pixel coordinates in the second frame
    y = ys + flow[:, 1]
    # align_corners=False: pixel i sits at normalised (2i + 1) / size - 1
    grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], dim=-1)  # [N, H, W, 2]
    warped = F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)
    inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).to(image.dtype)[:, None]
    return warped, inside


def _median3(x: torch.Tensor) -> torch.Tensor:
    """3x3 median of every channel of x [N, C, H, W], edges replicated."""
    n, c, h, w = x.shape
    patches = F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate").reshape(n * c, 1, h + 2, w + 2), 3)
    return patches.median(dim=1).values.reshape(n, c, h, w)  # patches [N * C, 9, H * W]


def _resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """flow [N, 2, h, w] -> [N, 2, H, W], its vectors rescaled to the new pixel size."""
    h, w = flow.shape[-2:]
    flow = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], device=flow.device, dtype=flow.dtype)
    return flow * scale.view(1, 2, 1, 1)


def _luma(video: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] in [-1, 1] -> [B, T, H, W] in [0, 1]."""
    weights = torch.tensor(_LUMA, device=video.device, dtype=video.dtype).view(1, 3, 1, 1, 1)
    return ((video * weights).sum(dim=1) + 1) / 2


def _lucas_kanade(
    first: torch.Tensor, second: torch.Tensor, flow: torch.Tensor, iterations: int, window: torch.Tensor
) -> torch.Tensor:
    """Refine flow [N, 2, H, W] from first to second [N, 1, H, W] by `iterations` warped LK updates."""
    derivative = torch.tensor(_DERIVATIVE, device=first.device, dtype=first.dtype) / 12
    gx0, gy0 = _gradients(first, derivative)
    for _ in range(iterations):
        warped, inside = _warp(second, flow)
        gx1, gy1 = _gradients(warped, derivative)
        # Both frames' gradients averaged: the gradient halfway along the motion, more accurate than either.
        # A pixel whose match left the frame (border-padded nonsense) contributes nothing.
        ix, iy, it = (gx0 + gx1) / 2 * inside, (gy0 + gy1) / 2 * inside, (warped - first) * inside
        s = _smooth(torch.cat([ix * ix, ix * iy, iy * iy, ix * it, iy * it], dim=1), window)  # [N, 5, H, W]
        sxx, sxy, syy, sxt, syt = s.unbind(dim=1)  # [N, H, W] each
        sxx, syy = sxx + _EPS, syy + _EPS
        det = sxx * syy - sxy * sxy  # > 0: the regularised tensor is positive definite
        du = (sxy * syt - syy * sxt) / det
        dv = (sxy * sxt - sxx * syt) / det
        # The median drops the outliers of occlusion edges before the next warp spreads them (Sun et al.,
        # "Secrets of optical flow", 2010); without it the updates oscillate around small objects.
        flow = _median3(flow + torch.stack([du, dv], dim=1))
    return flow


def optical_flow(video: torch.Tensor, levels: int = 3, iterations: int = 3, window: int = 5) -> torch.Tensor:
    """video [B, 3, T, H, W] in [-1, 1] -> flow [B, T-1, 2, H, W] in pixels per frame (x right, y down),
    flow[:, t] maps frame t to frame t+1: pixel p of frame t is at p + flow[:, t, :, p] in frame t+1.

    levels: pyramid levels, reduced on small frames so the coarsest side stays >= 8 px. The coarsest level
        sees the motion divided by 2^(levels - 1), and should see no more than ~2 px.
    iterations: warped LK updates per level. window: Gaussian window side (odd), sigma = window / 4.
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video shape {tuple(video.shape)} must be [B, 3, T, H, W]")
    b, _, t, h, w = video.shape
    if t < 2:
        raise ValueError(f"video has T={t} frames; optical flow needs T >= 2")
    if levels < 1 or iterations < 1:
        raise ValueError(f"levels={levels} and iterations={iterations} must both be >= 1")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window={window} must be an odd number >= 3")
    levels = min(levels, max(1, (min(h, w) // _MIN_SIDE).bit_length()))  # halvings round up: sides stay >= 8

    luma = _luma(video.float())  # [B, T, H, W]
    first = luma[:, :-1].reshape(b * (t - 1), 1, h, w)  # [N, 1, H, W], N = B * (T - 1)
    second = luma[:, 1:].reshape(b * (t - 1), 1, h, w)

    binomial = torch.tensor(_BINOMIAL, device=luma.device) / 16
    offsets = torch.arange(window, device=luma.device) - window // 2
    gaussian = torch.exp(-0.5 * (offsets / (window / 4)) ** 2)
    gaussian = gaussian / gaussian.sum()

    # Light smoothing first: LK linearises the image, and a blurred image stays linear over a larger motion.
    pyramid = [(_smooth(first, binomial), _smooth(second, binomial))]
    for _ in range(levels - 1):
        # averaging 2x2 blocks (bilinear at half size) keeps the half-pixel grid that _resize_flow assumes
        f, s = (_smooth(x, binomial) for x in pyramid[-1])
        size = ((f.shape[-2] + 1) // 2, (f.shape[-1] + 1) // 2)
        pyramid.append(tuple(F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in (f, s)))

    flow = torch.zeros(b * (t - 1), 2, *pyramid[-1][0].shape[-2:], device=luma.device)
    for f, s in reversed(pyramid):
        flow = _lucas_kanade(f, s, _resize_flow(flow, f.shape[-2:]), iterations, gaussian)
    return flow.reshape(b, t - 1, 2, h, w)


def flow_magnitude(flow: torch.Tensor) -> torch.Tensor:
    """flow [B, T-1, 2, H, W] -> speed [B, T-1, H, W] in pixels per frame."""
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow shape {tuple(flow.shape)} must be [B, T-1, 2, H, W]")
    return torch.linalg.vector_norm(flow, dim=2)
