"""The synthetic V1 population: receptive fields, modulation, noise.

Each neuron is a linear-nonlinear unit with a spatiotemporal receptive field:

- spatial: a Gabor quadrature pair (orientation, spatial frequency, phase, envelope),
  centred by retinotopy on the neuron's cortical position plus scatter;
- temporal: a biphasic kernel ``k1`` (difference of gammas, 100 to 300 ms) and its
  quadrature partner ``k2``; mixing them with weight ``direction_index`` makes the
  field space-time oriented, i.e. direction selective;
- simple cells respond to the half-rectified linear drive, complex cells to the
  energy of the quadrature pair;
- the drive is z-scored per neuron (on calibration movies), multiplied by a gain
  set by running speed and pupil dilation, and passed through a softplus;
- the eye position (pupil centre) shifts the image on the retina, so every
  receptive field follows the pupil centre.

Recorded responses add trial-to-trial variability: slow latent gain fluctuations
shared within assemblies of neurons, plus rate-dependent observation noise,
rectified at zero. The noise-free rate is the ground truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sensorium_data.synth.behavior import PUPIL_CENTER_REST

LAGS = 10  # frames of temporal kernel (333 ms at 30 Hz)
DOWNSAMPLE = 2  # receptive fields are computed on a 2x coarser grid
EYE_GAIN = 0.25  # screen pixels of image shift per eye-camera pixel
N_ASSEMBLIES = 12


@dataclass(frozen=True)
class Population:
    """Parameters of every neuron; each array has N entries along its first axis."""

    unit_ids: np.ndarray
    coordinates: np.ndarray  # N x 3, micrometres
    center: np.ndarray  # N x 2, (y, x) in screen pixels
    orientation: np.ndarray  # radians
    period: np.ndarray  # spatial period, screen pixels
    phase: np.ndarray
    sigma: np.ndarray  # Gaussian envelope, screen pixels
    is_complex: np.ndarray  # bool
    direction_index: np.ndarray  # 0 (none) .. 1 (fully direction selective)
    kernel: np.ndarray  # N x 2 x LAGS: k1, k2
    gain_running: np.ndarray
    gain_pupil: np.ndarray
    threshold: np.ndarray
    amplitude: np.ndarray
    assembly: np.ndarray  # int, shared latent noise group
    noise_scale: np.ndarray
    drive_mean: np.ndarray  # z-scoring of the drive, from calibration movies
    drive_std: np.ndarray

    @property
    def n_neurons(self) -> int:
        """Number of neurons."""
        return int(self.unit_ids.shape[0])

    def take(self, neurons: slice) -> Population:
        """The parameters of a slice of the neurons (views, no copies)."""
        return Population(**{k: v[neurons] for k, v in asdict(self).items()})

    def save(self, path: Path) -> None:
        """Write every parameter to one .npz file."""
        np.savez_compressed(path, **asdict(self))

    @classmethod
    def load(cls, path: Path) -> Population:
        """Read parameters written by :meth:`save`."""
        with np.load(path) as archive:
            return cls(**{k: archive[k] for k in archive.files})


def _gamma(t: np.ndarray, tau: np.ndarray, order: int = 3) -> np.ndarray:
    g = (t / tau) ** order * np.exp(-t / tau)
    return g / g.sum(axis=-1, keepdims=True)


def temporal_kernels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Biphasic kernels k1 and quadrature partners k2, N x 2 x LAGS, unit norm."""
    t = np.arange(LAGS, dtype=np.float64)[None, :]
    tau1 = rng.uniform(0.8, 1.5, size=(n, 1))  # peak at 2 tau: 50 to 100 ms
    tau2 = tau1 * rng.uniform(1.6, 2.2, size=(n, 1))
    beta = rng.uniform(0.3, 0.8, size=(n, 1))
    k1 = _gamma(t, tau1) - beta * _gamma(t, tau2)
    k2 = np.gradient(k1, axis=1)
    kernels = np.stack([k1, k2], axis=1)
    return kernels / np.linalg.norm(kernels, axis=2, keepdims=True)


def sample_population(rng: np.random.Generator, n: int, frame_shape: tuple[int, int]) -> Population:
    """Draw ``n`` neurons in a 630 x 630 um field of layer 2/3 (drive stats unset)."""
    h, w = frame_shape
    coords = np.column_stack(
        [rng.uniform(0, 630, n), rng.uniform(0, 630, n), rng.uniform(180, 380, n)]
    )
    # Retinotopy: cortical x -> azimuth, cortical y -> elevation, with scatter.
    center = np.column_stack(
        [
            h * (0.15 + 0.7 * coords[:, 1] / 630) + rng.normal(scale=2.0, size=n),
            w * (0.12 + 0.76 * coords[:, 0] / 630) + rng.normal(scale=3.0, size=n),
        ]
    )
    period = np.exp(rng.uniform(np.log(7), np.log(32), n))
    return Population(
        unit_ids=np.arange(n, dtype=np.int64) + 1,
        coordinates=coords.astype(np.float32),
        center=center,
        orientation=rng.uniform(0, np.pi, n),
        period=period,
        phase=rng.uniform(0, 2 * np.pi, n),
        sigma=np.clip(period * rng.uniform(0.3, 0.5, n), 2.5, 9.0),
        is_complex=rng.random(n) < 0.6,
        direction_index=rng.beta(1.2, 2.5, n),
        kernel=temporal_kernels(rng, n),
        gain_running=rng.uniform(0.0, 0.6, n),
        gain_pupil=rng.normal(0.1, 0.12, n),
        threshold=rng.uniform(0.3, 1.8, n),
        amplitude=np.exp(rng.normal(-0.3, 0.4, n)),
        assembly=rng.integers(0, N_ASSEMBLIES, n),
        noise_scale=rng.uniform(1.6, 2.4, n),
        drive_mean=np.zeros(n),
        drive_std=np.ones(n),
    )


def spatial_filters(pop: Population, frame_shape: tuple[int, int]) -> np.ndarray:
    """Gabor quadrature pairs on the coarse grid: (h/2 * w/2) x 2N, float32."""
    h, w = frame_shape[0] // DOWNSAMPLE, frame_shape[1] // DOWNSAMPLE
    ys = (np.arange(h) + 0.5) * DOWNSAMPLE
    xs = (np.arange(w) + 0.5) * DOWNSAMPLE
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    dy = gy.ravel()[:, None] - pop.center[None, :, 0]
    dx = gx.ravel()[:, None] - pop.center[None, :, 1]
    along = dx * np.cos(pop.orientation) + dy * np.sin(pop.orientation)
    across = -dx * np.sin(pop.orientation) + dy * np.cos(pop.orientation)
    envelope = np.exp(-(along**2 + (0.8 * across) ** 2) / (2 * pop.sigma**2))
    angle = 2 * np.pi * along / pop.period + pop.phase
    filters = np.concatenate([envelope * np.cos(angle), envelope * np.sin(angle)], axis=1)
    filters -= filters.mean(axis=0, keepdims=True)
    filters /= np.linalg.norm(filters, axis=0, keepdims=True) + 1e-9
    return filters.astype(np.float32)


def retinal_image(video: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
    """Downsample T x H x W frames and shift each by the eye position (Fourier shift).

    Returns T x (H/2 * W/2) contrast values, 0 at mean gray.
    """
    t, h, w = video.shape
    d = DOWNSAMPLE
    coarse = video.reshape(t, h // d, d, w // d, d).mean(axis=(2, 4)) / 127.5 - 1.0
    pad = 4
    padded = np.pad(coarse, ((0, 0), (pad, pad), (pad, pad)))
    shift = -(pupil_center.T - PUPIL_CENTER_REST[None, :]) * EYE_GAIN / d  # T x 2 (x, y)
    fy = np.fft.fftfreq(padded.shape[1])[None, :, None]
    fx = np.fft.fftfreq(padded.shape[2])[None, None, :]
    phase = np.exp(-2j * np.pi * (fx * shift[:, 0, None, None] + fy * shift[:, 1, None, None]))
    shifted = np.real(np.fft.ifft2(np.fft.fft2(padded) * phase))[:, pad:-pad, pad:-pad]
    return shifted.reshape(t, -1).astype(np.float32)


def linear_drive(pop: Population, even: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """Temporal filtering of the spatial projections, then the simple or complex drive.

    Args:
        pop: The neurons (N).
        even: Projections on the even Gabors, T x N.
        odd: Projections on the odd Gabors, T x N.

    Returns:
        The drive, T x N: the linear response for simple cells, the quadrature
        energy for complex cells.
    """
    t, n = even.shape
    k1 = pop.kernel[:, 0].astype(np.float32)
    k2 = pop.kernel[:, 1].astype(np.float32) * pop.direction_index.astype(np.float32)[:, None]
    first = np.zeros((t, n), dtype=np.float32)
    second = np.zeros((t, n), dtype=np.float32)
    for lag in range(1, min(LAGS, t)):  # the gamma kernels are 0 at lag 0
        span, past = slice(lag, t), slice(0, t - lag)
        first[span] += k1[:, lag] * even[past]
        first[span] += k2[:, lag] * odd[past]
        second[span] += k1[:, lag] * odd[past]
        second[span] -= k2[:, lag] * even[past]
    energy = np.sqrt(first * first + second * second)
    return np.where(pop.is_complex, energy, first)


def calibrate(pop: Population, drives: list[np.ndarray]) -> Population:
    """Set each neuron's drive mean and std from drives on calibration movies."""
    stacked = np.concatenate(drives)
    std = stacked.std(axis=0)
    return Population(
        **{
            **asdict(pop),
            "drive_mean": stacked.mean(axis=0),
            "drive_std": np.where(std > 0, std, 1.0),
        }
    )


def firing_rates(pop: Population, drive: np.ndarray, behavior: np.ndarray) -> np.ndarray:
    """Noise-free rates, T x N, from the drive and behaviour (2 x T)."""
    f32 = np.float32
    z = (drive - pop.drive_mean.astype(f32)) / pop.drive_std.astype(f32)
    running = np.tanh(behavior[1] / 10.0).astype(f32)[:, None]
    pupil = np.clip((behavior[0] - 18.0) / 4.0, -3, 3).astype(f32)[:, None]
    gain = np.exp(pop.gain_running.astype(f32) * running + pop.gain_pupil.astype(f32) * pupil)
    z *= f32(1.6) * gain
    z -= pop.threshold.astype(f32)
    rates = np.logaddexp(f32(0.0), z, out=z)
    rates *= pop.amplitude.astype(f32)
    return rates


def latent_gain(rng: np.random.Generator, frames: int, std: float = 0.5) -> np.ndarray:
    """Slow multiplicative gain fluctuations per assembly (T x assemblies), mean 1.

    Unobserved, so they make repeats of a clip differ: trial-to-trial variability.
    """
    a = np.exp(-1.0 / 30.0)
    latent = np.empty((frames, N_ASSEMBLIES))
    latent[0] = rng.normal(scale=std, size=N_ASSEMBLIES)
    steps = rng.normal(scale=std * np.sqrt(1 - a * a), size=(frames, N_ASSEMBLIES))
    for i in range(1, frames):
        latent[i] = a * latent[i - 1] + steps[i]
    return np.exp(latent - std**2 / 2).astype(np.float32)


def noisy_responses(
    pop: Population, rates: np.ndarray, latent: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Recorded responses (T x N): latent gain, then rate-dependent noise, rectified at 0."""
    mean = rates * latent[:, pop.assembly]
    noise = rng.standard_normal(rates.shape, dtype=np.float32)
    noise *= np.sqrt(mean + np.float32(0.01))
    noise *= pop.noise_scale.astype(np.float32)
    noise += mean
    return np.maximum(noise, np.float32(0.0), out=noise)
