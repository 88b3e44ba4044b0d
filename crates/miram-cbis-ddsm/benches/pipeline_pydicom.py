"""Decode + crop + resize with pydicom + Pillow: the comparison for benches/pipeline.rs.

Reads the generated dataset's manifest (synth_manifest.json) and, for every abnormality,
does what the Rust benchmark's `decode_crop_resize_1_thread` does: decode the full image and
the ROI mask, take the mask's bounding box, crop the square of side max(w, h) centred on it
(zero padding outside the image) and resize it to 112 x 112 with a bicubic filter. Prints the
images per second (best of `--repeat` passes, one thread).

    pip install pydicom pillow numpy
    python3 crates/miram-cbis-ddsm/benches/pipeline_pydicom.py target/tmp/miram-pipeline-bench
"""

import argparse
import json
import os
import time

import numpy as np
import pydicom
from PIL import Image


def lesion_crop(full, mask, size=112):
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0)
    sx = (x0 + x1 - side) // 2
    sy = (y0 + y1 - side) // 2
    patch = np.zeros((side, side), dtype=np.float32)
    h, w = full.shape
    cx0, cy0 = max(sx, 0), max(sy, 0)
    cx1, cy1 = min(sx + side, w), min(sy + side, h)
    patch[cy0 - sy:cy1 - sy, cx0 - sx:cx1 - sx] = full[cy0:cy1, cx0:cx1]
    img = Image.fromarray(patch, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with open(os.path.join(args.root, "synth_manifest.json")) as f:
        manifest = json.load(f)
    jobs = [(os.path.join(args.root, a["full_image"]), os.path.join(args.root, a["roi_mask"]))
            for a in manifest["abnormalities"]]
    best = float("inf")
    for _ in range(args.repeat):
        t = time.perf_counter()
        for full_path, mask_path in jobs:
            full = pydicom.dcmread(full_path).pixel_array
            mask = pydicom.dcmread(mask_path).pixel_array
            lesion_crop(full, mask)
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"impl": "pydicom+Pillow", "images": len(jobs), "seconds": best,
                      "images_per_second": len(jobs) / best}))


if __name__ == "__main__":
    main()
