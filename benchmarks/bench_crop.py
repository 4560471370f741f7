"""How detect -> crop -> classify compares with classifying FER2013's own crops, and what
landmark alignment does for turned faces.

    python benchmarks/bench_crop.py [--model default] [--faces 600]

Each PublicTest face is enlarged to 144 px and set in a 288 px frame (border repeated), then
(1) detected by YuNet and cropped with several margins: accuracy vs the whole 48x48 crop
classified directly (`--no-detect`), and (2) turned by known angles and classified with and
without alignment (`--no-align`): accuracy and agreement with the upright face's label, and (3)
cut to another detector's non-square box around YuNet's and classified as such a crop
(`classify`): stretched to a square (ferkit until session 43) or squared by repeating its edges.
Not a test: it only prints.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from ferkit.data import load_fer
from ferkit.data.preprocess import crop_face, eye_angle
from ferkit.inference import EmotionRecognizer

MARGINS = (0.0, 0.1, 0.2, 0.3)
ANGLES = (-30, -15, 0, 15, 30)
ASPECTS = ((0.8, 1.2), (0.9, 1.2), (1.0, 1.3), (1.2, 0.9))  # taller boxes, as some detectors give, and a wide one


def framed(face: np.ndarray, angle: float = 0.0) -> np.ndarray:
    big = cv2.resize(face, (144, 144), interpolation=cv2.INTER_CUBIC)
    frame = cv2.copyMakeBorder(big, 72, 72, 72, 72, cv2.BORDER_REPLICATE)
    if angle:
        frame = cv2.warpAffine(frame, cv2.getRotationMatrix2D((144, 144), angle, 1.0), (288, 288),
                               borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)


def central_face(rec: EmotionRecognizer, image: np.ndarray):
    faces = rec.detector.detect(image)
    return min(faces, key=lambda f: abs(f.box[0] + f.box[2] / 2 - 144) + abs(f.box[1] + f.box[3] / 2 - 144),
               default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", default="../shared/data/fer2013.zip")
    parser.add_argument("--faces", type=int, default=600)
    args = parser.parse_args()
    rec = EmotionRecognizer(args.model)
    data = load_fer(args.data)
    pick = np.random.default_rng(0).choice(np.flatnonzero(data.usage == "public"), args.faces, replace=False)
    faces, truth = data.images[pick], data.labels[pick]
    whole = np.array([max(s, key=s.get) for s in rec.classify(list(faces))])
    names = np.array(rec.classes)[truth]
    print(f"{len(faces)} PublicTest faces; classified whole (--no-detect): accuracy {(whole == names).mean():.4f}")

    detected = [central_face(rec, framed(f)) for f in faces]
    found = [i for i, d in enumerate(detected) if d is not None]
    print(f"YuNet found {len(found)}/{len(faces)} framed faces\n\nmargin  accuracy  same label as --no-detect")
    for margin in MARGINS:
        crops = [crop_face(cv2.cvtColor(framed(faces[i]), cv2.COLOR_BGR2GRAY), detected[i].box, margin) for i in found]
        labels = np.array([max(s, key=s.get) for s in rec.classify(crops)])
        print(f"{margin:6.2f}  {(labels == names[found]).mean():8.4f}  {(labels == whole[found]).mean():8.4f}")

    print(f"\nturned faces (margin {rec.margin}): accuracy / same label as upright, without and with --align")
    for angle in ANGLES:
        cells = []
        for align in (False, True):
            crops, idx = [], []
            for i in found:
                image = framed(faces[i], angle)
                face = central_face(rec, image)
                if face is None:
                    continue
                turn = eye_angle(face.landmarks) if align else 0.0
                crop = crop_face(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), face.box, rec.margin, turn)
                crops.append(crop)
                idx.append(i)
            predicted = np.array([max(s, key=s.get) for s in rec.classify(crops)])
            cells.append(f"{(predicted == names[idx]).mean():.4f} / {(predicted == whole[idx]).mean():.4f}")
        print(f"  {angle:+3d} deg ({len(idx)} found): {cells[0]}   {cells[1]}")

    size = rec.backend.info.image_size
    print("\nnon-square crops (YuNet's box scaled, width x height): accuracy stretched / squared")
    for scale in ASPECTS:
        crops = [boxed(cv2.cvtColor(framed(faces[i]), cv2.COLOR_BGR2GRAY), detected[i].box, scale) for i in found]
        stretched = [cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) for crop in crops]
        cells = [(np.array([max(s, key=s.get) for s in rec.classify(c)]) == names[found]).mean()
                 for c in (stretched, crops)]
        print(f"  {scale[0]:.1f} x {scale[1]:.1f}: {cells[0]:.4f} / {cells[1]:.4f}")


def boxed(gray: np.ndarray, box, scale: tuple[float, float]) -> np.ndarray:
    """The part of `gray` inside `box` scaled about its centre by (width, height) factors."""
    x, y, w, h = box
    (cx, cy), (half_w, half_h) = (x + w / 2, y + h / 2), (w * scale[0] / 2, h * scale[1] / 2)
    return gray[max(0, round(cy - half_h)):round(cy + half_h), max(0, round(cx - half_w)):round(cx + half_w)]


if __name__ == "__main__":
    main()
