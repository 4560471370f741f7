"""FER2013's Training faces as one small file for a lent GPU machine, and back into folders there.

    python scripts/device_faces.py pack ../shared/data/fer2013.zip .devdata/fer.npz
    python3 scripts/device_faces.py unpack .devdata/fer.npz /tmp/fer      # on the GPU machine

A call to the GPU machine carries at most 64 MiB: the repository (10 MB since the bundled model
grew to 8 MB), the Keras wheels (3 MB) and the faces. fer2013.zip's train/ alone is 57 MB as a
zip, 3 MB of it per-file headers and names; packed here as one array of the same JPEG bytes it is
54 MB, which put the call 0.4 MB over the cap in a rehearsal of session 46, and deflated (the
faces' JPEG headers repeat) about 44 MB. `unpack`
writes every face back under its own path, so the folder reads as the zip did: in path order,
giving the same validation split, and with the same pixels, which the bundled model's table of
answers (ferkit.training.teacher_table) is keyed by. Ten PublicTest faces a class come along, so
that a run's closing evaluation has a test split; the real one is scored here.
"""

from __future__ import annotations

import argparse
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

TEST_PER_CLASS = 10


def pack(source: Path, target: Path) -> None:
    names, blobs, tests = [], [], Counter()
    with zipfile.ZipFile(source) as archive:
        for member in archive.infolist():
            parts = member.filename.split("/")
            if member.is_dir() or len(parts) != 3 or parts[0] not in ("train", "test"):
                continue
            if parts[0] == "test":
                if tests[parts[1]] >= TEST_PER_CLASS:
                    continue
                tests[parts[1]] += 1
            names.append(member.filename)
            blobs.append(np.frombuffer(archive.read(member), np.uint8))
    if not any(name.startswith("train/") for name in names):
        raise SystemExit(f"{source}: no train/<emotion>/<face> members")
    target.parent.mkdir(parents=True, exist_ok=True)
    joined = np.frombuffer("\0".join(names).encode(), np.uint8)  # 1 byte a character, not a str array's 4
    with open(target, "wb") as out:  # a file object: np.savez would add .npz to a name without it
        np.savez_compressed(out, names=joined, sizes=np.array([len(b) for b in blobs]), data=np.concatenate(blobs))
    print(f"{len(names)} faces -> {target} ({target.stat().st_size / 1e6:.1f} MB)")


def unpack(source: Path, root: Path) -> None:
    with np.load(source) as packed:
        names = packed["names"].tobytes().decode().split("\0")
        sizes, data = packed["sizes"], packed["data"]
    if len(names) != len(sizes) or sizes.sum() != data.size:
        raise SystemExit(f"{source} is damaged: {len(names)} names, {len(sizes)} sizes, {data.size} bytes")
    for name, end, size in zip(names, np.cumsum(sizes), sizes):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[end - size:end].tobytes())
    print(f"{len(names)} faces under {root}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.target)


if __name__ == "__main__":
    main()
