"""A stand-in for the full FER2013 download, built from the development copy, to time the default
as its users (and the project's PrivateTest benchmark) will run it.

    python benchmarks/full_download.py ../shared/data/fer2013.zip /tmp/fer2013-full.zip
    ferkit train /tmp/fer2013-full.zip

The full download's `test/` folder holds PublicTest and PrivateTest. With both present, the
official split trains on all of Training (28,709 faces, 11% more than the 90% the development
copy leaves after carving out validation), validates on PublicTest and tests on PrivateTest.
The development copy has no PrivateTest, so each PublicTest image is written a second time as
`PrivateTest_<id>`: the run's test figure is then PublicTest's, for a model whose epoch was
chosen on PublicTest (a small optimistic bias; the run's time and epoch count are the real
ones). Write the zip outside the repository: it holds FER2013's images.
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path


def build(source: Path, target: Path) -> dict[str, int]:
    counts = {"Training": 0, "PublicTest": 0}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in src.infolist():
            if info.is_dir():
                continue
            data = src.read(info)
            out.writestr(info.filename, data)
            name = Path(info.filename).name
            for usage in counts:
                counts[usage] += name.startswith(f"{usage}_")
            if name.startswith("PublicTest_"):
                out.writestr(info.filename.replace("/PublicTest_", "/PrivateTest_"), data)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the development copy (fer2013.zip)")
    parser.add_argument("target", type=Path, help="the zip to write (outside the repository)")
    args = parser.parse_args()
    counts = build(args.source, args.target)
    print(f"{args.target}: {counts['Training']} Training, {counts['PublicTest']} PublicTest, "
          f"and the same {counts['PublicTest']} again as PrivateTest")


if __name__ == "__main__":
    main()
