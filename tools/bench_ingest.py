"""Measure the per-item cost of ``scf ingest`` on this machine: still images and videos, one process; and disk.

Still image: decode a 640x480 JPEG of a real face (skimage's astronaut, public domain), Haar detection,
224x224 crop, PNG encode. Video: a 10 s 640x480 MJPG .avi at 25 fps; frame count, sequential decode up to
frame 6 + n/2 (FLIP rule), detection and crop of the two frames, PNG encode. Disk: the bytes of that one crop
as PNG (the default) and with ``--image-format jpeg``, and the size they imply for CelebA-Spoof (625,537
images, FACTS section 4): the shards, and twice that once the first load (`scf.schema.load_table`) has made
its Arrow copy in the ``datasets`` cache. One crop of one face stands for all; real crops vary around it.

Not measured: the file walk, list parsing, shard writing, the skip log and resume bookkeeping (together a
few ms per row, small next to the per-item cost), nor the first load's conversion time.

    .venv/bin/python tools/bench_ingest.py [--images 40] [--videos 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from scf.ingest.base import Item, Meta
from scf.ingest.worker import WorkSettings, process

CELEBA_SPOOF_IMAGES = 625_537
"""Images of CelebA-Spoof (FACTS section 4), one row each."""


def crop_bytes(root: Path, item: Item) -> dict[str, int]:
    """Bytes of the stored crop of ``item`` (a face image under ``root``) per ``--image-format``."""
    sizes = {}
    for fmt in ("png", "jpeg"):
        out = process(item, str(root), "bench", WorkSettings(image_format=fmt))
        assert out.rows, out.skips
        sizes[fmt] = len(out.rows[0]["image"]["bytes"])
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--videos", type=int, default=4)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    scene = np.full((480, 640, 3), 110, np.uint8)
    scene[100:400, 200:480] = cv2.resize(data.astronaut()[0:300, 100:380], (280, 300))
    settings = WorkSettings()
    meta = Meta(1, "live")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        Image.fromarray(scene).save(root / "face.jpg", quality=90)
        item = Item("face.jpg", "image", meta, "test", "face")
        process(item, tmp, "bench", settings)  # warm-up: cascade load
        t = time.perf_counter()
        for _ in range(args.images):
            out = process(item, tmp, "bench", settings)
            assert out.rows, out.skips
        per_image = (time.perf_counter() - t) / args.images
        sizes = crop_bytes(root, item)

        writer = cv2.VideoWriter(str(root / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
        for i in range(250):
            writer.write(cv2.cvtColor(np.roll(scene, i % 5, axis=1), cv2.COLOR_RGB2BGR))
        writer.release()
        vitem = Item("v.avi", "video", meta, "test", "v")
        t = time.perf_counter()
        for _ in range(args.videos):
            out = process(vitem, tmp, "bench", settings)
            assert len(out.rows) == 2, out.skips
        per_video = (time.perf_counter() - t) / args.videos
    print(f"machine: {os.cpu_count()} CPU cores; one worker process (scale ~linearly with --workers up to the cores)")
    print(f"still image 640x480 JPEG -> detect + crop 224 + PNG: {per_image * 1000:.1f} ms = {1 / per_image:.1f} images/s")
    print(f"video 10 s 640x480 MJPG (250 frames), FLIP rule 2 frames: {per_video * 1000:.0f} ms = "
          f"{1 / per_video:.2f} videos/s ({2 / per_video:.1f} rows/s)")
    print(f"one 224x224 crop: PNG {sizes['png']:,} bytes, JPEG (--image-format jpeg) {sizes['jpeg']:,} bytes")
    for fmt, label in (("png", "PNG"), ("jpeg", "JPEG")):
        shards = sizes[fmt] * CELEBA_SPOOF_IMAGES / 1e9
        print(f"CelebA-Spoof ({CELEBA_SPOOF_IMAGES:,} images) as {label}: shards {shards:.1f} GB; with the first "
              f"load's Arrow copy (HF_DATASETS_CACHE) {2 * shards:.1f} GB")


if __name__ == "__main__":
    main()
