"""Stimuli of the synthetic mouse: naturalistic movies and out-of-domain clips.

Every generator returns a clip T x H x W, float32, grayscale 0..255, and is a pure
function of its random generator, so a clip id and a seed define the clip.

Main tiers (train, oracle, main tests) show naturalistic movies: windows that pan,
drift and zoom over natural photographs shipped with scikit-image (or over static
pink-noise textures), with scene cuts. Bonus tiers show out-of-domain stimuli:
drifting gratings, Gaussian dots, random-dot kinematograms, dynamic pink noise and
flashed images (photographs that the movies never use).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

Rng = np.random.Generator
GRAY = 127.5
MOVIE_IMAGES = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
    "immunohistochemistry",
)
FLASH_IMAGES = ("cat", "page", "hubble_deep_field", "text")
"""Photographs for flashed-image trials only: the movies never show them."""


@lru_cache(maxsize=1)
def _photographs() -> dict[str, np.ndarray]:
    """Grayscale float32 photographs (0..255) from scikit-image's bundled samples."""
    try:
        import skimage.data as samples  # the optional 'synth' extra
    except ImportError as err:
        raise ImportError(
            "the synthetic mouse needs scikit-image: pip install 'sensorium-serve[synth]'"
        ) from err
    images = {}
    for name in (*MOVIE_IMAGES, *FLASH_IMAGES):
        image = np.asarray(getattr(samples, name)(), dtype=np.float32)
        if image.ndim == 3:
            image = image[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        images[name] = image
    return images


def pink_noise(rng: Rng, shape: tuple[int, ...], exponent: float = 1.0) -> np.ndarray:
    """Zero-mean, unit-std noise whose amplitude spectrum falls as 1/f**exponent."""
    freqs = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    radius = np.sqrt(sum(f**2 for f in freqs))
    radius.flat[0] = np.inf
    spectrum = np.fft.fftn(rng.standard_normal(shape)) / radius**exponent
    noise = np.real(np.fft.ifftn(spectrum))
    return ((noise - noise.mean()) / (noise.std() + 1e-12)).astype(np.float32)


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``image`` at float coordinates (edges clamped)."""
    h, w = image.shape
    ys = np.clip(ys, 0, h - 1.001)
    xs = np.clip(xs, 0, w - 1.001)
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - y0, xs - x0
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _smooth_walk(rng: Rng, n: int, step: float, smooth: int = 15) -> np.ndarray:
    walk = np.cumsum(rng.normal(scale=step, size=n + smooth))
    kernel = np.ones(smooth) / smooth
    return np.convolve(walk, kernel, mode="valid")[:n]


def _pan_zoom(rng: Rng, image: np.ndarray, frames: int, h: int, w: int) -> np.ndarray:
    """A window drifting and zooming over ``image``, rendered at h x w."""
    ih, iw = image.shape
    base = rng.uniform(0.25, 0.7) * min(ih / h, iw / w)
    zoom = base * np.exp(_smooth_walk(rng, frames, 0.01))
    cy = ih / 2 + _smooth_walk(rng, frames, rng.uniform(0.3, 1.5)) + rng.uniform(-ih, ih) / 5
    cx = iw / 2 + _smooth_walk(rng, frames, rng.uniform(0.3, 1.5)) + rng.uniform(-iw, iw) / 5
    gy, gx = np.meshgrid(np.arange(h) - h / 2, np.arange(w) - w / 2, indexing="ij")
    ys = cy[:, None, None] + gy[None] * zoom[:, None, None]
    xs = cx[:, None, None] + gx[None] * zoom[:, None, None]
    return _bilinear(image, ys, xs)


def _normalise(clip: np.ndarray, rng: Rng, contrast: tuple[float, float]) -> np.ndarray:
    """Set mean luminance near gray and a random RMS contrast; clip to 0..255."""
    std = clip.std() + 1e-6
    target = rng.uniform(*contrast) * GRAY
    out = (clip - clip.mean()) / std * target + GRAY + rng.normal(scale=10)
    return np.clip(out, 0, 255).astype(np.float32)


def natural_movie(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Scenes of 2 to 5 s, each a window panning/zooming over a photo or a pink texture."""
    photos = _photographs()
    parts, done = [], 0
    while done < frames:
        n = min(int(rng.integers(60, 150)), frames - done)
        if rng.random() < 0.2:
            source = pink_noise(rng, (256, 384), exponent=rng.uniform(0.9, 1.3))
        else:
            source = photos[MOVIE_IMAGES[int(rng.integers(len(MOVIE_IMAGES)))]]
        parts.append(_normalise(_pan_zoom(rng, source, n, h, w), rng, (0.25, 0.6)))
        done += n
    return np.concatenate(parts)


def _blocks(rng: Rng, frames: int, low: int, high: int) -> list[int]:
    sizes, done = [], 0
    while done < frames:
        sizes.append(min(int(rng.integers(low, high)), frames - done))
        done += sizes[-1]
    return sizes


def drifting_gratings(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Full-field sinusoidal gratings, a new direction/SF/TF every 0.5 to 1.5 s."""
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    parts = []
    for n in _blocks(rng, frames, 15, 45):
        theta = rng.uniform(0, 2 * np.pi)
        period = rng.uniform(6, 30)
        speed = rng.uniform(0.5, 3.0) * rng.choice([-1, 1])
        phase0 = rng.uniform(0, 2 * np.pi)
        proj = gx * np.cos(theta) + gy * np.sin(theta)
        t = np.arange(n)[:, None, None]
        grating = np.sin(2 * np.pi * (proj[None] - speed * t) / period + phase0)
        parts.append(GRAY + rng.uniform(0.5, 1.0) * GRAY * grating)
    return np.clip(np.concatenate(parts), 0, 255).astype(np.float32)


def gaussian_dots(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Bright or dark Gaussian blobs flashed at random places for 3 to 10 frames."""
    gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    clip = np.full((frames, h, w), GRAY, dtype=np.float32)
    for start in range(0, frames, 4):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            sigma = rng.uniform(2, 6)
            sign = rng.choice([-1.0, 1.0])
            blob = np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * sigma**2))
            stop = min(frames, start + int(rng.integers(3, 10)))
            clip[start:stop] += sign * 120 * blob
    return np.clip(clip, 0, 255)


def random_dot_kinematogram(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Small dots moving coherently (with noise dots) in a direction that changes per block."""
    n_dots = 120
    ys, xs = rng.uniform(0, h, n_dots), rng.uniform(0, w, n_dots)
    polarity = rng.choice([-110.0, 110.0], n_dots)
    clip = np.full((frames, h, w), GRAY, dtype=np.float32)
    t = 0
    for n in _blocks(rng, frames, 20, 60):
        direction = rng.uniform(0, 2 * np.pi)
        coherence = rng.uniform(0.3, 1.0)
        speed = rng.uniform(0.5, 2.0)
        for _ in range(n):
            coherent = rng.random(n_dots) < coherence
            angles = np.where(coherent, direction, rng.uniform(0, 2 * np.pi, n_dots))
            ys = (ys + speed * np.sin(angles)) % h
            xs = (xs + speed * np.cos(angles)) % w
            np.add.at(clip[t], (ys.astype(int), xs.astype(int)), polarity)
            t += 1
    return np.clip(clip, 0, 255)


def dynamic_pink_noise(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Spatiotemporal noise with a 1/f amplitude spectrum in space and time."""
    return _normalise(pink_noise(rng, (frames, h, w), exponent=1.0), rng, (0.3, 0.5))


def flashed_images(rng: Rng, frames: int, h: int, w: int) -> np.ndarray:
    """Held-out photographs flashed for 0.3 to 0.6 s, separated by gray."""
    photos = _photographs()
    clip = np.full((frames, h, w), GRAY, dtype=np.float32)
    t = int(rng.integers(5, 15))
    while t < frames:
        on = min(int(rng.integers(9, 18)), frames - t)
        photo = photos[FLASH_IMAGES[int(rng.integers(len(FLASH_IMAGES)))]]
        still = _pan_zoom(rng, photo, 1, h, w)
        clip[t : t + on] = _normalise(still, rng, (0.4, 0.7))
        t += on + int(rng.integers(9, 18))
    return clip


MAIN_STIMULI: dict[str, Callable[[Rng, int, int, int], np.ndarray]] = {
    "natural_movie": natural_movie,
}
BONUS_STIMULI: dict[str, Callable[[Rng, int, int, int], np.ndarray]] = {
    "drifting_gratings": drifting_gratings,
    "gaussian_dots": gaussian_dots,
    "random_dot_kinematogram": random_dot_kinematogram,
    "pink_noise": dynamic_pink_noise,
    "flashed_images": flashed_images,
}
STIMULI = {**MAIN_STIMULI, **BONUS_STIMULI}


def stimulus_statistics(clip: np.ndarray) -> dict[str, float]:
    """Summary statistics that tell stimulus families apart (clip: T x H x W).

    Returns mean luminance, RMS contrast, the correlation of successive frames
    (temporal smoothness), the slope of the spatial amplitude spectrum on a
    log-log scale (about -1 for natural images) and the fraction of frames that do
    not change (flashed stimuli hold still, movies keep moving).
    """
    centred = clip - clip.mean()
    flat = centred.reshape(clip.shape[0], -1)
    a, b = flat[:-1].ravel(), flat[1:].ravel()
    temporal = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))
    amp = np.abs(np.fft.fft2(clip - clip.mean(axis=(1, 2), keepdims=True))).mean(axis=0)
    fy, fx = np.meshgrid(
        np.fft.fftfreq(clip.shape[1]), np.fft.fftfreq(clip.shape[2]), indexing="ij"
    )
    radius = np.sqrt(fy**2 + fx**2)
    keep = (radius > 0.03) & (radius < 0.45) & (amp > 0)
    slope = float(np.polyfit(np.log(radius[keep]), np.log(amp[keep]), 1)[0])
    change = np.abs(np.diff(clip, axis=0)).mean(axis=(1, 2))
    return {
        "mean_luminance": float(clip.mean()),
        "rms_contrast": float(clip.std() / (clip.mean() + 1e-9)),
        "frame_to_frame_correlation": temporal,
        "spatial_spectrum_slope": slope,
        "static_frame_fraction": float((change < 0.5).mean()),
    }
