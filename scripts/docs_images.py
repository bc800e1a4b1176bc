#!/usr/bin/env python3
"""docs/images/console-*.png from the console's browser-test screenshots, made small.

    FWTEST_SHOTS_DIR=/tmp/shots .venv/bin/python -m pytest tests/integration/test_console.py
    .venv/bin/python bench/console.py --shots /tmp/shots        # the live page with 5 cameras
    .venv/bin/python scripts/docs_images.py /tmp/shots

Each screenshot is cut to at most ``--max-height`` CSS pixels from the top, scaled to at most ``--width``
pixels wide and stored as a PNG of at most 128 colours (the console is flat colours and text; the faces
survive it well enough at this size); one over ``--max-kb`` fails the run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# docs name -> the screenshots it may come from, best first (test screenshot names: tests/browser/console.mjs).
PICKS = {
    "console-live": ("bench-live.png", "live.png"),
    "console-faces": ("faces.png",),
    "console-test": ("test-identify.png",),
    "console-unknown": ("unknown-merged.png", "unknown.png"),
    "console-phone": ("phone-faces.png",),
}


def shrink(source: Path, target: Path, width: int, max_height: int) -> int:
    """Writes the small PNG; returns its size in bytes."""
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    # Phone screenshots are at twice the CSS pixels: the height limit is in CSS pixels.
    scale = 2 if image.width < 1000 else 1
    image = image.crop((0, 0, image.width, min(image.height, max_height * scale)))
    out_width = min(width, image.width) if scale == 1 else min(width // 2, image.width // scale)
    if image.width > out_width:
        image = image.resize((out_width, round(image.height * out_width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        target, optimize=True)
    return target.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shots", type=Path, help="the folder of screenshots")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--max-height", type=int, default=900)
    parser.add_argument("--max-kb", type=int, default=150)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, candidates in PICKS.items():
        source = next((args.shots / c for c in candidates if (args.shots / c).is_file()), None)
        if source is None:
            print(f"{name}: none of {', '.join(candidates)} in {args.shots}", file=sys.stderr)
            failed = True
            continue
        size = shrink(source, args.out / f"{name}.png", args.width, args.max_height)
        print(f"{name}.png from {source.name}: {size / 1024:.0f} KB")
        if size > args.max_kb * 1024:
            print(f"{name}.png is over {args.max_kb} KB", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
