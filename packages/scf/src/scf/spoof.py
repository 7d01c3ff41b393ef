"""A spoof simulator: renders print and replay presentation attacks of a face, and synthetic capture domains.

Everything here is SYNTHETIC. It exists so that the toolkit's pipeline (captioning, training, cross-domain
evaluation) can run offline on faces that ship inside registry packages; it is not a substitute for the
licensed FAS datasets, and a model trained on it says nothing about real attacks.

The physics is simplified but follows the cues FAS models rely on:

* **print** (`render_print`): a reduced colour gamut (lower saturation and contrast, raised black level,
  dimmer white), a CMY halftone dot screen, paper texture (fibres and grain), slight defocus blur, and a
  bent sheet (a sinusoidal warp with the matching shading).
* **replay** (`render_replay`): screen gamma and a colour cast, the RGB sub-pixel grid, moiré from the
  grid beating against the camera's sampling, and a specular glare spot.
* **capture domains** (`CaptureDomain.capture`): camera colour response (a 3x3 matrix and white balance),
  lighting (gain and a directional gradient), sensor noise, blur and JPEG quality.

All functions take float32 RGB images in [0, 1] of shape (H, W, 3) and a `numpy.random.Generator`, so a
seed fixes the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Image = np.ndarray  # float32 (H, W, 3) in [0, 1]


def _cv2():  # noqa: ANN202 - OpenCV is imported lazily: it costs start-up time
    import cv2

    return cv2


def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def gaussian_blur(image: Image, sigma: float) -> Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (no-op below 0.1)."""
    if sigma < 0.1:
        return image
    return _cv2().GaussianBlur(image, (0, 0), sigmaX=float(sigma))


def _saturation(image: Image, factor: float) -> Image:
    gray = image.mean(axis=2, keepdims=True)
    return gray + (image - gray) * factor


def pose_jitter(image: Image, rng: np.random.Generator, *, max_angle: float = 8.0, max_shift: float = 0.04,
                scale: tuple[float, float] = (0.92, 1.08)) -> Image:
    """Small in-plane rotation, scale and translation, as between frames of a video."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    angle = rng.uniform(-max_angle, max_angle)
    s = rng.uniform(*scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, s)
    m[:, 2] += rng.uniform(-max_shift, max_shift, size=2) * np.array([w, h])
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def relight(image: Image, rng: np.random.Generator, *, gain: tuple[float, float] = (0.8, 1.15),
            gradient: float = 0.25) -> Image:
    """Global gain and a linear illumination gradient in a random direction."""
    h, w = image.shape[:2]
    yy, xx = _coords(h, w)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * (xx / w - 0.5) + np.sin(theta) * (yy / h - 0.5)) * 2
    light = rng.uniform(*gain) * (1 + rng.uniform(0, gradient) * ramp)
    return np.clip(image * light[..., None], 0, 1)


# --- Print attacks ---------------------------------------------------------------------------------------
def halftone(image: Image, rng: np.random.Generator, *, cell: float = 3.0, strength: float = 0.6) -> Image:
    """A CMY amplitude-modulated halftone: each ink channel thresholded against a rotated dot screen.

    Screen angles are the printing convention (cyan 15°, magenta 75°, yellow 0°); ``strength`` blends the
    binary dots with the continuous tone (a printer's dot gain and the camera's blur soften the dots).
    """
    h, w = image.shape[:2]
    yy, xx = _coords(h, w)
    out = np.empty_like(image)
    offset = rng.uniform(0, 2 * np.pi)
    for c, angle in enumerate((15.0, 75.0, 0.0)):
        a = np.deg2rad(angle)
        u = (np.cos(a) * xx + np.sin(a) * yy) * (2 * np.pi / cell)
        v = (-np.sin(a) * xx + np.cos(a) * yy) * (2 * np.pi / cell)
        screen = 0.5 + 0.25 * (np.cos(u + offset) + np.cos(v + offset))  # dot screen in [0, 1]
        ink = 1.0 - image[..., c]  # C, M, Y coverage
        dots = (ink > screen).astype(np.float32)
        out[..., c] = 1.0 - (strength * dots + (1 - strength) * ink)
    return out


def paper_texture(image: Image, rng: np.random.Generator, *, grain: float = 0.04, fibre: float = 0.05) -> Image:
    """Multiplicative paper grain (fine noise) and fibres (low-frequency mottling)."""
    h, w = image.shape[:2]
    fine = rng.normal(0, grain, size=(h, w)).astype(np.float32)
    coarse = gaussian_blur(rng.normal(0, 1, size=(h, w)).astype(np.float32), 6.0)
    coarse *= fibre / (coarse.std() + 1e-6)
    return np.clip(image * (1 + fine + coarse)[..., None], 0, 1)


def bend(image: Image, rng: np.random.Generator, *, amplitude: float = 0.03, shading: float = 0.18) -> Image:
    """A sheet bent about a vertical axis: sinusoidal horizontal displacement and the matching shading."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    yy, xx = _coords(h, w)
    phase = rng.uniform(0, 2 * np.pi)
    periods = rng.uniform(0.5, 1.2)
    arg = 2 * np.pi * periods * xx / w + phase
    map_x = xx + amplitude * w * np.sin(arg)
    warped = cv2.remap(image, map_x, yy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    shade = 1 - shading * (0.5 + 0.5 * np.cos(arg))
    return np.clip(warped * shade[..., None], 0, 1)


def render_print(face: Image, rng: np.random.Generator) -> tuple[Image, str]:
    """A printed photo of ``face`` held before the camera. Returns the image and the paper kind."""
    paper = str(rng.choice(["A4 matte", "A4 glossy", "photo paper", "poster"]))
    img = _saturation(face, rng.uniform(0.55, 0.8))
    black, white = rng.uniform(0.07, 0.16), rng.uniform(0.82, 0.92)
    img = black + (white - black) * np.clip(img, 0, 1)  # reduced gamut and contrast
    img = halftone(img, rng, cell=rng.uniform(3.5, 5.0), strength=rng.uniform(0.6, 0.85))
    img = paper_texture(img, rng, grain=rng.uniform(0.02, 0.05), fibre=rng.uniform(0.02, 0.06))
    img = gaussian_blur(img, rng.uniform(0.4, 0.8))
    img = bend(img, rng, amplitude=rng.uniform(0.01, 0.04), shading=rng.uniform(0.08, 0.22))
    if paper == "A4 glossy":
        img = glare(img, rng, strength=rng.uniform(0.15, 0.3))
    return np.clip(img, 0, 1).astype(np.float32), paper


# --- Replay attacks --------------------------------------------------------------------------------------
def pixel_grid(image: Image, rng: np.random.Generator, *, pitch: float = 3.0, depth: float = 0.35) -> Image:
    """The RGB sub-pixel stripe structure of an LCD seen close up (each column lights one primary)."""
    h, w = image.shape[:2]
    _, xx = _coords(h, w)
    yy, _ = _coords(h, w)
    out = image.copy()
    for c in range(3):
        stripe = 0.5 + 0.5 * np.cos(2 * np.pi * (xx / pitch - c / 3.0))
        out[..., c] *= 1 - depth + depth * 2 * stripe
    rows = 0.5 + 0.5 * np.cos(2 * np.pi * yy / pitch)  # the black matrix between pixel rows
    return np.clip(out * (1 - 0.5 * depth + 0.5 * depth * rows)[..., None], 0, 1)


def moire(image: Image, rng: np.random.Generator, *, strength: float = 0.18) -> Image:
    """Moiré: the beat between the screen's pixel grid and the camera's sampling grid.

    Two gratings of nearly equal frequency (the screen pitch, and the camera pitch after a small rotation and
    scale) multiply; their difference frequency is the coloured low-frequency banding seen on recaptured
    screens.
    """
    h, w = image.shape[:2]
    yy, xx = _coords(h, w)
    f = rng.uniform(0.28, 0.34)  # cycles per pixel, close to the sensor's Nyquist limit
    a1, a2 = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2) + rng.uniform(0.03, 0.09)
    s = rng.uniform(1.01, 1.05)
    g1 = np.cos(2 * np.pi * f * (np.cos(a1) * xx + np.sin(a1) * yy))
    g2 = np.cos(2 * np.pi * f * s * (np.cos(a2) * xx + np.sin(a2) * yy))
    beat = gaussian_blur((g1 * g2).astype(np.float32), 1.5)  # keep the difference frequency
    beat /= np.abs(beat).max() + 1e-6
    tint = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.2)], dtype=np.float32)
    return np.clip(image * (1 + strength * beat[..., None] * tint), 0, 1)


def glare(image: Image, rng: np.random.Generator, *, strength: float = 0.45) -> Image:
    """A specular reflection: an additive, slightly elongated bright spot."""
    h, w = image.shape[:2]
    yy, xx = _coords(h, w)
    cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
    sy, sx = rng.uniform(0.06, 0.18) * h, rng.uniform(0.1, 0.3) * w
    spot = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2)
    return np.clip(image + strength * spot[..., None], 0, 1)


def render_replay(face: Image, rng: np.random.Generator) -> tuple[Image, str]:
    """A face shown on a screen and re-captured. Returns the image and the screen kind."""
    screen = str(rng.choice(["phone", "tablet", "laptop", "monitor"]))
    img = np.clip(face, 0, 1) ** rng.uniform(0.75, 1.3)  # screen gamma differs from the scene's
    cast = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.92, 1.05), rng.uniform(1.0, 1.2)], dtype=np.float32)
    img = np.clip(img * cast + rng.uniform(0.02, 0.08), 0, 1)  # blue-ish backlight and raised black
    img = pixel_grid(img, rng, pitch=rng.uniform(3.5, 4.5), depth=rng.uniform(0.3, 0.5))
    img = moire(img, rng, strength=rng.uniform(0.25, 0.45))
    img = gaussian_blur(img, rng.uniform(0.3, 0.8))
    img = glare(img, rng, strength=rng.uniform(0.2, 0.5))
    return img.astype(np.float32), screen


# --- Capture domains -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptureDomain:
    """A synthetic camera and setting: the 'dataset' a sample comes from in cross-domain protocols."""

    name: str
    colour_matrix: tuple[tuple[float, float, float], ...]
    """3x3 camera colour response applied to linear RGB (rows: output R, G, B)."""
    white_balance: tuple[float, float, float]
    gamma: float
    noise: float
    """Standard deviation of Gaussian sensor noise, in [0, 1] units."""
    blur: float
    jpeg_quality: int
    lighting: tuple[float, float]
    """Range of the global illumination gain."""
    description: str

    def capture(self, image: Image, rng: np.random.Generator) -> bytes:
        """Photograph ``image`` with this camera; returns the JPEG file the camera writes."""
        cv2 = _cv2()
        img = relight(image, rng, gain=self.lighting)
        img = img @ np.asarray(self.colour_matrix, dtype=np.float32).T * np.asarray(self.white_balance, np.float32)
        img = np.clip(img, 0, 1) ** (1.0 / self.gamma)
        img = gaussian_blur(img, self.blur)
        img = img + rng.normal(0, self.noise, size=img.shape).astype(np.float32)
        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()


CAPTURE_DOMAINS: tuple[CaptureDomain, ...] = (
    CaptureDomain(
        "sample-domain-a", ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), (1.0, 1.0, 1.0), 1.0,
        0.01, 0.3, 92, (0.95, 1.1), "neutral webcam, bright office light, high JPEG quality",
    ),
    CaptureDomain(
        "sample-domain-b", ((0.9, 0.12, -0.02), (0.05, 0.9, 0.05), (0.0, 0.1, 0.9)), (1.08, 1.0, 0.85), 1.1,
        0.03, 0.6, 70, (0.75, 0.95), "warm phone camera, dim tungsten light, medium JPEG",
    ),
    CaptureDomain(
        "sample-domain-c", ((1.05, -0.05, 0.0), (-0.03, 1.05, -0.02), (0.02, -0.04, 1.05)), (0.9, 1.0, 1.12), 0.9,
        0.02, 0.9, 55, (0.9, 1.2), "cool laptop camera, daylight, strong JPEG",
    ),
    CaptureDomain(
        "sample-domain-d", ((0.8, 0.15, 0.05), (0.1, 0.8, 0.1), (0.05, 0.15, 0.8)), (1.0, 1.02, 0.95), 1.0,
        0.05, 1.2, 40, (0.6, 0.85), "low-end camera, low light, heavy noise and JPEG",
    ),
)
"""The four synthetic capture domains of the embedded sample (a leave-one-domain-out protocol runs on them)."""
