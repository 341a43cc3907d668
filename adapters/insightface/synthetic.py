"""Synthetic face-like identities written in InsightFace's formats (no downloads, no real faces).

Each identity is a parametric cartoon face: skin tone, hair colour and hairline, eye positions,
size and spacing, eyebrow slant, nose length, mouth width and a low-frequency skin texture, all
drawn from a seeded generator. Each image of an identity adds nuisance that a face model must
learn to ignore: pose (shift, in-plane rotation, scale), lighting (gain and a directional
gradient), background colour, blur and sensor noise, then JPEG compression.

:func:`write_synthetic_dataset` writes a real ``train.rec``/``train.idx``/``property`` (training
identities) and ``val.bin`` of same/different pairs drawn from *other* identities (open-set,
like celeba299 -> LFW), so the demo and tests exercise the real pipeline end to end.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from facenas.utils.seed import make_rng

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SyntheticConfig:
    """Sizes of a synthetic dataset (defaults: a demo-sized set that trains in a minute or two)."""

    num_identities: int = 100
    images_per_identity: int = 20
    val_identities: int = 50
    val_pairs: int = 600
    image_size: int = 112
    seed: int = 0

    #: largest image side (the generator draws faces at this resolution; aligned faces are 112)
    MAX_IMAGE_SIZE = 1024
    #: raw pixels the generator may hold at once (train and val images are drawn in memory)
    MAX_BYTES = 4 << 30

    def validate(self) -> "SyntheticConfig":
        """Refuse sizes that cannot make a dataset (one line naming the field and its CLI flag)."""
        from facenas.errors import ConfigError

        checks = [
            ("num_identities", "--identities", self.num_identities, 2, "training needs at least 2 identities"),
            ("images_per_identity", "--images-per-identity", self.images_per_identity, 1, None),
            ("val_identities", "--val-identities", self.val_identities, 2,
             "different-identity pairs need at least 2 identities"),
            ("val_pairs", "--val-pairs", self.val_pairs, 1, None),
            ("image_size", "--image-size", self.image_size, 16, None),
            ("seed", "--seed", self.seed, 0, None),
        ]
        for field, flag, value, low, why in checks:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{field} ({flag}) is {value!r}; it must be a whole number >= {low}"
                                  + (f" ({why})" if why else ""))
        if self.image_size > self.MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size (--image-size) is {self.image_size}; at most {self.MAX_IMAGE_SIZE} "
                              "(aligned faces are 112x112)")
        per_val = max(2, int(np.ceil(2 * self.val_pairs / self.val_identities)))
        images = self.num_identities * self.images_per_identity + self.val_identities * per_val
        need = images * self.image_size ** 2 * 3
        if need > self.MAX_BYTES:
            raise ConfigError(f"{images} synthetic images of {self.image_size}x{self.image_size} would take "
                              f"{need / 2**30:.1f} GiB of memory (at most {self.MAX_BYTES >> 30} GiB); use fewer "
                              "--identities / --images-per-identity / --val-pairs or a smaller --image-size")
        return self


class SyntheticFaces:
    """Seeded generator of identities and their images (``uint8`` HxWx3 RGB).

    Args:
        seed: seed of the generator; identities ``i`` depend only on ``(seed, i)``.
        image_size: output resolution (square).
    """

    def __init__(self, seed: int = 0, image_size: int = 112):
        self.seed = seed
        self.size = image_size

    # identity parameters depend only on (seed, identity index)
    def identity(self, index: int) -> dict[str, np.ndarray | float]:
        r = make_rng(np.random.SeedSequence([self.seed, 1, index]))
        return {
            "skin": r.uniform([120, 80, 60], [240, 200, 170]),
            "hair": r.uniform(0, 120, 3),
            "hairline": r.uniform(0.18, 0.34),
            "eye_y": r.uniform(0.40, 0.50),
            "eye_dx": r.uniform(0.13, 0.22),
            "eye_r": r.uniform(0.035, 0.065),
            "iris": r.uniform(10, 140, 3),
            "brow_tilt": r.uniform(-0.06, 0.06),
            "nose_len": r.uniform(0.08, 0.17),
            "mouth_y": r.uniform(0.70, 0.80),
            "mouth_w": r.uniform(0.10, 0.22),
            "lip": r.uniform([120, 30, 40], [220, 110, 120]),
            "face_w": r.uniform(0.30, 0.40),
            "texture": r.normal(0, 1, (6, 6, 3)),
        }

    def canonical(self, index: int) -> np.ndarray:
        """The identity's frontal, evenly lit face (float32 RGB in 0..255)."""
        import cv2

        p = self.identity(index)
        s = self.size
        img = np.zeros((s, s, 3), np.float32)
        cx = s / 2
        skin = tuple(float(v) for v in p["skin"])
        cv2.ellipse(img, (int(cx), int(0.55 * s)), (int(p["face_w"] * s), int(0.42 * s)), 0, 0, 360, skin, -1, cv2.LINE_AA)
        tex = cv2.resize(p["texture"].astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC) * 14.0
        mask = (img.sum(axis=2, keepdims=True) > 0).astype(np.float32)
        img += tex * mask
        hair = tuple(float(v) for v in p["hair"])
        cv2.ellipse(img, (int(cx), int(0.30 * s)), (int((p["face_w"] + 0.04) * s), int(0.22 * s)), 0, 180, 360, hair, -1, cv2.LINE_AA)
        cv2.rectangle(img, (int(cx - (p["face_w"] + 0.04) * s), int(0.12 * s)), (int(cx + (p["face_w"] + 0.04) * s), int(p["hairline"] * s)), hair, -1)
        ey, dx, er = p["eye_y"] * s, p["eye_dx"] * s, max(2, int(p["eye_r"] * s))
        for sign in (-1, 1):
            ex = cx + sign * dx
            cv2.ellipse(img, (int(ex), int(ey)), (int(er * 1.6), er), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA)
            cv2.circle(img, (int(ex), int(ey)), max(1, int(er * 0.8)), tuple(float(v) for v in p["iris"]), -1, cv2.LINE_AA)
            tilt = sign * p["brow_tilt"] * s
            cv2.line(img, (int(ex - er * 1.8), int(ey - er * 2.2 + tilt)), (int(ex + er * 1.8), int(ey - er * 2.2 - tilt)), hair, 2, cv2.LINE_AA)
        nose_top, nose_bot = int(ey + er), int(ey + er + p["nose_len"] * s)
        cv2.line(img, (int(cx), nose_top), (int(cx + 3), nose_bot), tuple(0.7 * v for v in skin), 2, cv2.LINE_AA)
        my, mw = int(p["mouth_y"] * s), int(p["mouth_w"] * s)
        cv2.ellipse(img, (int(cx), my), (mw, max(2, mw // 4)), 0, 0, 180, tuple(float(v) for v in p["lip"]), -1, cv2.LINE_AA)
        return img

    def render(self, canonical: np.ndarray, r: np.random.Generator) -> np.ndarray:
        """One image of an identity: random pose, lighting, background, blur, noise."""
        import cv2

        s = self.size
        angle = r.uniform(-10, 10)
        scale = r.uniform(0.93, 1.07)
        m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
        m[:, 2] += r.uniform(-5, 5, 2)
        bg = r.uniform(0, 255, 3)
        face_mask = (canonical.sum(axis=2) > 0).astype(np.float32)
        warped = cv2.warpAffine(canonical, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=0)
        wmask = cv2.warpAffine(face_mask, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        img = warped + (1 - wmask) * bg[None, None, :]
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        theta = r.uniform(0, 2 * np.pi)
        light = r.uniform(0.75, 1.25) * (1 + r.uniform(0, 0.5) * (np.cos(theta) * xx + np.sin(theta) * yy))
        img = img * light[..., None]
        if r.random() < 0.3:
            img = cv2.GaussianBlur(img, (3, 3), 0)
        img = img + r.normal(0, 6, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    def generate(self, num_identities: int, images_per_identity: int, first_identity: int = 0,
                 stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, S, S, 3) uint8 RGB grouped by identity, and labels 0..num_identities-1."""
        r = make_rng(np.random.SeedSequence([self.seed, 2, stream, first_identity]))
        images = np.empty((num_identities * images_per_identity, self.size, self.size, 3), np.uint8)
        labels = np.repeat(np.arange(num_identities), images_per_identity)
        k = 0
        for i in range(num_identities):
            canon = self.canonical(first_identity + i)
            for _ in range(images_per_identity):
                images[k] = self.render(canon, r)
                k += 1
        return images, labels


def _encode(images: np.ndarray, quality: int = 92) -> list[bytes]:
    import cv2

    out = []
    for img in images:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(buf.tobytes())
    return out


def make_pairs(labels: np.ndarray, num_pairs: int, r: np.random.Generator) -> list[tuple[int, int, bool]]:
    """Half same-identity and half different-identity index pairs, interleaved as LFW folds."""
    by_id: dict[int, np.ndarray] = {int(l): np.nonzero(labels == l)[0] for l in np.unique(labels)}
    ids = np.array(sorted(by_id))
    pairs = []
    for k in range(num_pairs):
        if k % 2 == 0:
            i = int(r.choice(ids))
            a, b = r.choice(by_id[i], 2, replace=False)
            pairs.append((int(a), int(b), True))
        else:
            i, j = r.choice(ids, 2, replace=False)
            pairs.append((int(r.choice(by_id[int(i)])), int(r.choice(by_id[int(j)])), False))
    return pairs


def write_synthetic_dataset(out_dir: str | os.PathLike, config: SyntheticConfig | None = None) -> dict:
    """Write ``train.rec/.idx/property`` and ``val.bin`` of synthetic identities into ``out_dir``."""
    from facenas.adapters.insightface.binset import write_bin
    from facenas.adapters.insightface.recordio import write_insightface_rec

    cfg = (config or SyntheticConfig()).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = SyntheticFaces(seed=cfg.seed, image_size=cfg.image_size)
    images, labels = gen.generate(cfg.num_identities, cfg.images_per_identity)
    info = write_insightface_rec(out, _encode(images), labels.tolist(), (cfg.image_size, cfg.image_size))
    # verification pairs from identities the training set does not contain (open set)
    per_val = max(2, int(np.ceil(2 * cfg.val_pairs / max(1, cfg.val_identities))) )
    vimages, vlabels = gen.generate(cfg.val_identities, per_val, first_identity=cfg.num_identities, stream=1)
    pairs = make_pairs(vlabels, cfg.val_pairs, make_rng(np.random.SeedSequence([cfg.seed, 3])))
    encoded = _encode(vimages)
    write_bin(out / "val.bin", [encoded[i] for a, b, _ in pairs for i in (a, b)], [s for _, _, s in pairs])
    info.update({"val_pairs": len(pairs), "val_identities": cfg.val_identities, "path": str(out),
                 "image_size": [cfg.image_size, cfg.image_size]})
    log.info("wrote synthetic dataset %s: %d images of %d identities, %d verification pairs", out,
             info["images"], info["identities"], len(pairs))
    return info
