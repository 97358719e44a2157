"""Benchmark: decoding an image folder cold (cache cleared) and warm (cache hit).

Generates, once, an image folder of noisy digits (default 10,000 28x28 grayscale PNGs in
10 class folders) and measures, in images/s (best of ``--repeat`` runs):

- ``serial``   :func:`nncli.data.images.decode_images` in-process, one core
- ``threads``  the same on a ThreadPoolExecutor (all cores)
- ``processes`` the same on a ProcessPoolExecutor (all cores)
- ``auto``     the same with the pool nncli picks (see ``decode_images``)
- ``cold``     :func:`nncli.data.images.read_image_folder` with an empty cache (listing, decode
               on all cores, cache write)
- ``warm``     the same with the cache filled (listing + fingerprint + load + checksum)

Usage::

    python bench/image_decode.py                      # 10,000 28x28 L PNGs in $TMPDIR
    python bench/image_decode.py --n 2000 --size 64x64 --mode RGB --format jpg
    python bench/image_decode.py --dir datasets/bench-digits --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nncli.data.folders import list_folder
from nncli.data.images import available_cpus, decode_images, read_image_folder


def generate(root: Path, n: int, size: tuple[int, int], mode: str, fmt: str,
             seed: int = 0) -> None:
    """Write ``n`` noisy digit images, ``n / 10`` per class folder ``0``..``9``."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    width, height = size
    try:
        font = ImageFont.load_default(size=max(8, int(height * 0.8)))
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    for k in range(10):
        (root / str(k)).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % 10
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        dx, dy = rng.integers(-width // 8, width // 8 + 1, size=2)
        draw.text((width / 2 + dx, height / 2 + dy), str(k), fill=255, font=font, anchor="mm")
        canvas = canvas.rotate(float(rng.normal(0, 10)), resample=Image.Resampling.BILINEAR)
        pixels = np.asarray(canvas, dtype=np.float64)
        pixels = pixels + rng.normal(0, 25, size=pixels.shape)
        if mode == "RGB":
            tint = rng.uniform(0.5, 1.0, size=3)
            pixels = pixels[..., None] * tint + rng.normal(0, 10, size=(height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(root / str(k) / f"{i:05d}.{fmt}")


def ensure_dataset(root: Path, n: int, size: tuple[int, int], mode: str, fmt: str) -> None:
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == f"{n} {size} {mode} {fmt}":
        return
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    generate(root, n, size, mode, fmt)
    marker.write_text(f"{n} {size} {mode} {fmt}")
    print(f"generated {n} images in {root} ({time.perf_counter() - started:.1f}s)",
          file=sys.stderr)


def best_rate(n: int, run: Callable[[], object], repeat: int,
              before: Callable[[], None] | None = None) -> tuple[float, object]:
    """Images/s of the fastest of ``repeat`` runs (``before`` runs untimed each time)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return n / best, result


def fresh_process_seconds(root: Path, resize: tuple[int, ...] | None, mode: str, cache: Path,
                          clear_first: bool) -> float:
    """Wall time of a new interpreter that imports nncli and reads the folder once."""
    import subprocess

    if clear_first:
        shutil.rmtree(cache, ignore_errors=True)
    code = ("from nncli.data.images import read_image_folder; "
            f"read_image_folder({str(root)!r}, {resize!r}, {mode!r}, {str(cache)!r})")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None,
                        help="dataset folder (generated there if missing)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", default="28x28", help="generated image size WxH")
    parser.add_argument("--mode", default="L", choices=["L", "RGB"])
    parser.add_argument("--format", default="png", help="file extension: png, jpg, bmp...")
    parser.add_argument("--resize", default=None, help="decode with data.image.size WxH")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fresh", action="store_true",
                        help="also time cold and warm reads in a new Python process each")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    resize = tuple(int(v) for v in args.resize.split("x")) if args.resize else None
    root = args.dir or Path(tempfile.gettempdir()) / (
        f"nncli-bench-{args.n}-{args.size}-{args.mode}-{args.format}")
    ensure_dataset(root, args.n, size, args.mode, args.format)  # type: ignore[arg-type]

    listing = list_folder(root)
    paths = [os.path.join(root, rel) for entries in listing.files for rel, _, _ in entries]
    n = len(paths)
    cache = Path(tempfile.mkdtemp(prefix="nncli-bench-cache-"))
    try:
        def clear() -> None:
            for item in cache.iterdir():
                item.unlink()

        rates: dict[str, float] = {}
        outputs = {}
        rates["serial"], outputs["serial"] = best_rate(
            n, lambda: decode_images(paths, resize, args.mode, workers=1)[0], args.repeat)
        rates["threads"], outputs["threads"] = best_rate(
            n, lambda: decode_images(paths, resize, args.mode, pool="thread")[0], args.repeat)
        rates["processes"], outputs["processes"] = best_rate(
            n, lambda: decode_images(paths, resize, args.mode, pool="process")[0], args.repeat)
        rates["auto"], outputs["auto"] = best_rate(
            n, lambda: decode_images(paths, resize, args.mode)[0], args.repeat)
        rates["cold"], cold = best_rate(
            n, lambda: read_image_folder(root, resize, args.mode, cache), args.repeat, clear)
        rates["warm"], warm = best_rate(
            n, lambda: read_image_folder(root, resize, args.mode, cache), max(args.repeat, 5))
        for name, X in outputs.items():
            assert np.array_equal(X, cold.X), f"{name} decoded differently"  # type: ignore
        assert np.array_equal(cold.X, warm.X)  # type: ignore[union-attr]
        fresh = {name: fresh_process_seconds(root, resize, args.mode, cache, clear_first)
                 for name, clear_first in (("cold", True), ("warm", False))} if args.fresh else {}
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    shape = cold.input_shape  # type: ignore[union-attr]
    print(f"{n} images {'x'.join(map(str, shape))} ({args.format}, {args.mode}"
          f"{', resized' if resize else ''}) from {root}; {available_cpus()} cores; "
          f"best of {args.repeat}")
    for name in ("serial", "threads", "processes", "auto", "cold", "warm"):
        print(f"  {name:<10} {rates[name]:>10,.0f} images/s  {n / rates[name] * 1e3:8.1f} ms")
    print(f"  warm / cold speed-up:        {rates['warm'] / rates['cold']:6.1f}x")
    print(f"  processes / serial speed-up: {rates['processes'] / rates['serial']:6.2f}x")
    print(f"  threads / serial speed-up:   {rates['threads'] / rates['serial']:6.2f}x")
    if fresh:
        print(f"  new process each (imports included): cold {fresh['cold'] * 1e3:.0f} ms, "
              f"warm {fresh['warm'] * 1e3:.0f} ms, speed-up {fresh['cold'] / fresh['warm']:.1f}x")


if __name__ == "__main__":
    main()
