from __future__ import annotations

import re
import zipfile
from collections import Counter

import cv2
import numpy as np
import pytest

from conftest import synthetic_faces, write_folder
from ferkit.data import EMOTIONS, load_fer, parse_classes
from ferkit.data.preprocess import to_gray, to_model_input
from ferkit.data.sources import FerDataset
from ferkit.data.splits import face_keys, make_splits, repeats_training, select_classes
from ferkit.errors import FerkitError


# --- class names -------------------------------------------------------------------------------

def test_parse_classes_canonical_order_and_case():
    assert parse_classes("Surprise, angry,fear") == ("angry", "fear", "surprise")
    assert parse_classes("anger,Happiness,surprised") == ("angry", "happy", "surprise")  # as folders are named
    assert parse_classes(None) == EMOTIONS


@pytest.mark.parametrize("spec, message", [("angry,contempt", "unknown class name(s) contempt; choose from angry"),
                                           ("happy", "choose at least two distinct classes"),
                                           ("happy,happy", "choose at least two distinct classes"),
                                           ("", "choose at least two distinct classes")])
def test_parse_classes_rejects_bad_specs(spec, message):
    with pytest.raises(FerkitError, match=re.escape(message)):
        parse_classes(spec)


# --- readers -----------------------------------------------------------------------------------

def test_folder_with_train_and_test(synthetic_folder):
    data = load_fer(synthetic_folder)
    assert len(data) == 4 * 75
    assert data.images.shape[1:] == (48, 48) and data.images.dtype == np.uint8
    assert Counter(data.usage) == {"train": 240, "public": 60}
    assert data.class_counts() == {"angry": 75, "happy": 75, "sad": 75, "surprise": 75}
    assert not data.skipped


def test_bare_emotion_folders_have_no_usage(tmp_path):
    images, labels = synthetic_faces(("fear", "neutral"), 3)
    data = load_fer(write_folder(tmp_path, images, labels, split=None, prefix="img"))
    assert len(data) == 6 and set(data.usage) == {""}


def test_faces_in_subfolders_of_an_emotion_folder_are_read_as_that_emotion(tmp_path):
    """One's own data kept by person (train/happy/s01/*.jpg) had been skipped, each file "outside an
    emotion folder", and the run refused for lack of those classes."""
    images, labels = synthetic_faces(("fear", "happy"), 4)
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = tmp_path / ("train" if i % 4 else "test") / label / f"s{i % 2:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    data = load_fer(tmp_path)
    assert data.class_counts() == {"fear": 4, "happy": 4} and not data.skipped
    assert Counter(data.usage) == {"train": 6, "public": 2}  # the part from the folder above the emotion's
    for i, (image, label) in enumerate(zip(images, labels)):  # each emotion's parts in folders of its own
        folder = tmp_path / "by-emotion" / label / ("train" if i % 4 else "test")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    assert Counter(load_fer(tmp_path / "by-emotion").usage) == {"train": 6, "public": 2}  # had been no part


def test_other_sizes_and_colour_are_resized_to_48_gray(tmp_path):
    folder = tmp_path / "happy"
    folder.mkdir()
    cv2.imwrite(str(folder / "big.jpg"), np.full((120, 90, 3), 200, np.uint8))
    data = load_fer(tmp_path)
    assert data.images.shape == (1, 48, 48)


def test_model_input_larger_than_the_free_memory_is_refused_before_it_is_made(monkeypatch):
    """Linux grants what it has not got: 28,709 faces at --image-size 1000 had ended in an out-of-memory
    traceback or the OOM killer. Small batches (a video's faces) never read the free memory."""
    from ferkit.data import preprocess

    monkeypatch.setattr(preprocess, "free_memory", lambda: 2 ** 29)
    with pytest.raises(FerkitError, match=r"^3 faces of 8000x8000 px take 0.9 GiB as the model's input, more than "
                                          r"the 0.5 GiB of memory free$"):
        to_model_input(np.zeros((3, 48, 48), np.uint8), 8000)  # 3 x 8000^2 x 5 bytes: 0.96e9, never made
    with pytest.raises(FerkitError, match="free: do this$"):
        preprocess.check_fits_memory(3, 8000, ": do this")
    preprocess.check_fits_memory(3, 5000)  # 0.375e9 bytes, checked (> 2^28): fits
    monkeypatch.setattr(preprocess, "free_memory", lambda: pytest.fail("read for a small batch"))
    assert to_model_input(np.zeros((3, 48, 48), np.uint8), 96).shape == (3, 96, 96, 1)
    preprocess.check_fits_memory(2, 5000)  # 0.25e9 bytes
    monkeypatch.setattr(preprocess, "free_memory", lambda: None)  # unknown (macOS): not refused
    preprocess.check_fits_memory(3, 8000)


def test_a_16_bit_face_trains_as_inference_sees_it(tmp_path):
    """The same scaling as at inference, not OpenCV's shift by 8: a 12-bit face had trained as a
    nearly black one. In colour too, where the brightest channel, not the gray, says the depth."""
    from ferkit.data.preprocess import to_gray
    from ferkit.inference.images import read_image_file

    images, _ = synthetic_faces(("happy",), 1)
    face = images[0].astype(np.int64)
    face[0, 0] = 255
    # BGR, red the brightest channel: the gray peaks at 39% of it, under 2,048 at 12 bits, so the
    # gray's own depth (11 bits) would read it twice as bright
    colour = np.stack([face // 8, face // 8, face], axis=-1)
    for name, pixels in (("eight", face.astype(np.uint8)), ("twelve", (face * 4095 + 127) // 255),
                         ("colour", (colour * 4095 + 127) // 255)):
        write_folder(tmp_path / name, [pixels.astype(np.uint8 if name == "eight" else np.uint16)], ["happy"],
                     split=None)
    trained = {name: load_fer(tmp_path / name).images[0].astype(int) for name in ("eight", "twelve", "colour")}
    assert np.abs(trained["eight"] - trained["twelve"]).max() <= 1 and trained["twelve"].mean() > 50
    seen = to_gray(read_image_file(next((tmp_path / "colour").rglob("*.png"))))
    np.testing.assert_array_equal(trained["colour"], seen)
    assert np.abs(trained["colour"] - to_gray(colour.astype(np.uint8)).astype(int)).max() <= 1


def test_a_colour_png_trains_as_inference_sees_it(tmp_path):
    """OpenCV's grayscale decode (libpng's own conversion) rounded differently from the BGR decode
    inference makes, by 1 on about half the pixels of a colour PNG."""
    from ferkit.data.preprocess import to_gray
    from ferkit.inference.images import read_image_file

    rng = np.random.default_rng(3)
    face = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    path = write_folder(tmp_path, [face], ["happy"], split=None)
    trained = load_fer(path).images[0]
    np.testing.assert_array_equal(trained, to_gray(read_image_file(next(path.rglob("*.png")))))


def test_a_float_colour_tiff_trains_as_inference_reads_it(tmp_path):
    """OpenCV's grayscale decode refuses 32-bit float colour TIFFs, which inference reads: they had
    been counted as unreadable in training."""
    from ferkit.data.preprocess import to_gray
    from ferkit.inference.images import read_image_file

    images, _ = synthetic_faces(("happy",), 1)
    folder = tmp_path / "happy"
    folder.mkdir()
    colour = np.dstack([images[0]] * 3).astype(np.float32) / 255
    assert cv2.imwrite(str(folder / "face.tiff"), colour)
    data = load_fer(tmp_path)
    assert len(data) == 1 and not data.skipped
    np.testing.assert_array_equal(data.images[0], to_gray(read_image_file(folder / "face.tiff")))
    assert np.abs(data.images[0].astype(int) - images[0]).max() <= 1


def test_zip_read_directly(real_zip, real_members):
    data = load_fer(real_zip)
    assert len(data) == len(real_members)
    expected = Counter(name.split("/")[1] for name, _ in real_members)
    assert data.class_counts() == dict(expected)
    assert set(data.usage) == {"train", "public"}


def test_csv_codes_map_to_names(real_csv, real_zip):
    from_csv, from_zip = load_fer(real_csv), load_fer(real_zip)
    assert from_csv.class_counts() == from_zip.class_counts()
    assert Counter(from_csv.usage) == Counter(from_zip.usage)
    # Same pixels: JPEG decoded once, written as numbers, read back.
    assert sorted(from_csv.images.sum(axis=(1, 2)).tolist()) == sorted(from_zip.images.sum(axis=(1, 2)).tolist())


@pytest.mark.parametrize("name", ["fer2013/fer2013.csv", "./fer2013.csv"])
def test_a_zipped_fer2013_csv_reads_like_the_csv(real_csv, tmp_path, name):
    """fer2013.csv zipped as it is (with macOS' metadata beside it): was 'no images found'. So was one
    named ./fer2013.csv, as `tar -a -cf data.zip .` names it: its "." read as a hidden folder."""
    zipped = tmp_path / "fer2013.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(name, real_csv.read_bytes())  # `write` would drop the "./"
        archive.writestr("__MACOSX/fer2013/._fer2013.csv", b"\x00\x05\x16\x07")
    plain, inside = load_fer(real_csv), load_fer(zipped)
    assert inside.class_counts() == plain.class_counts() and list(inside.usage) == list(plain.usage)
    assert np.array_equal(inside.images, plain.images)
    assert inside.source == f"{zipped}:{name}"


def test_csv_sad_and_neutral_codes(tmp_path):
    path = tmp_path / "f.csv"
    pixels = " ".join(["7"] * 2304)
    path.write_text(f"emotion,pixels,Usage\n4,{pixels},Training\n6,{pixels},PrivateTest\n")
    data = load_fer(path)
    assert [EMOTIONS[i] for i in data.labels] == ["sad", "neutral"]
    assert list(data.usage) == ["train", "private"]


def test_bad_rows_are_counted_not_silent(tmp_path):
    good = " ".join(["1"] * 2304)
    path = tmp_path / "f.csv"
    path.write_text(
        "emotion,pixels\n"
        f"3,{good}\n"
        f"9,{good}\n"            # unknown code
        "x,1 2 3\n"              # bad code
        "2,1 2 3\n"              # wrong pixel count
        f"2,{good.replace('1', 'a', 1)}\n"  # non-numeric
        f"5,{' '.join(['300'] * 2304)}\n"   # out of range
    )
    data = load_fer(path)
    assert len(data) == 1
    assert data.skipped == {"bad emotion code": 2, "not 2304 pixels in 0..255": 2, "non-numeric pixels": 1}


def test_csv_from_excel_with_bom_and_odd_values(tmp_path):
    good = " ".join(["1"] * 2304)
    path = tmp_path / "excel.csv"
    path.write_text(f"emotion,pixels\n3,{good}\n\u00b2,{good}\n2,{' '.join(['9' * 30] * 2304)}\n",
                    encoding="utf-8-sig")
    data = load_fer(path)
    assert len(data) == 1
    assert data.skipped == {"bad emotion code": 1, "non-numeric pixels": 1}


def test_unreadable_images_are_counted(tmp_path):
    images, labels = synthetic_faces(("angry", "sad"), 2)
    write_folder(tmp_path, images, labels)
    (tmp_path / "train" / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "train" / "sad" / "empty.png").write_bytes(b"")  # OpenCV asserts on these
    (tmp_path / "train" / "sad" / "notes.txt").write_text("hi")
    (tmp_path / "train" / "contempt").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "contempt" / "x.png"), images[0])
    data = load_fer(tmp_path)
    assert len(data) == 4
    assert data.skipped["unreadable image"] == 2
    assert data.skipped["not an image file"] == 1
    assert data.skipped["file outside an emotion folder (train/contempt)"] == 1


def test_a_zip_damaged_in_places_counts_those_faces_and_reads_the_rest(tmp_path, real_members):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in real_members[:3]:
            archive.writestr(name, data)
    raw = bytearray(good.read_bytes())
    second = raw.find(real_members[1][0].encode()) + len(real_members[1][0])  # its local header's name
    raw[second + 20] ^= 0xFF  # a flipped byte in that face's compressed data: a bad checksum
    (tmp_path / "damaged.zip").write_bytes(bytes(raw))
    data = load_fer(tmp_path / "damaged.zip")
    assert len(data) == 2 and data.skipped == {"damaged in the zip": 1}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_zipped_csv_damaged_inside_is_a_clear_error(tmp_path, method):
    rows = "".join(f"{i % 7},{' '.join(['128'] * 2304)},Training\n" for i in range(40))
    path = tmp_path / "fer2013.zip"
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("fer2013.csv", "emotion,pixels,Usage\n" + rows)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the CSV's data: a bad checksum (or bad deflate data)
    path.write_bytes(bytes(raw))
    with pytest.raises(FerkitError, match="its fer2013.csv is damaged"):  # was zipfile.BadZipFile's traceback
        load_fer(path)


def test_an_unreadable_file_in_a_data_folder_is_counted_not_fatal(tmp_path):
    images, labels = synthetic_faces(("fear", "happy"), 2)
    folder = write_folder(tmp_path / "data", images, labels)
    (folder / "train" / "happy" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # was FileNotFoundError
    data = load_fer(folder)
    assert len(data) == 4 and data.skipped == {"unreadable file (a broken link, no permission)": 1}


def test_a_password_protected_zip_says_so(tmp_path, real_members):
    path = _zip_of(tmp_path / "locked.zip", real_members[:2])
    _edit_headers(path, "flags", lambda flags: flags | 0x1)  # the "encrypted" flag, as zip -P sets it
    with pytest.raises(FerkitError, match="2 of its files are password-protected: unzip it with its password"):
        load_fer(path)
    _zip_of(path, [*real_members[:2], ("README.txt", b"about this copy")])  # only a readme locked: read
    _edit_headers(path, "flags", lambda flags: flags | 0x1, named=b"README")
    assert len(load_fer(path)) == 2


def test_a_zip_python_cannot_decompress_says_so_not_damaged(tmp_path, real_members):
    """Deflate64 (7-Zip's option) counted every file as "damaged in the zip": a good download sent
    for again."""
    path = _zip_of(tmp_path / "d64.zip", real_members[:2])
    _edit_headers(path, "method", lambda method: 9)  # Deflate64
    with pytest.raises(FerkitError, match="compressed with Deflate64, which Python's zipfile cannot read: extract it"):
        load_fer(path)
    # a readme it cannot read is no reason to refuse the images
    _zip_of(path, [*real_members[:2], ("README.txt", b"about this copy")])
    _edit_headers(path, "method", lambda method: 98, named=b"README")  # PPMd
    assert len(load_fer(path)) == 2


def test_a_zip_asking_for_a_newer_zip_version_is_a_clear_error(tmp_path, real_members):
    """A damaged "version needed to extract" made Python's zipfile raise NotImplementedError: a
    traceback instead of a word."""
    path = _zip_of(tmp_path / "v64.zip", real_members[:2])
    raw = bytearray(path.read_bytes())
    at = raw.find(b"PK\x01\x02")
    raw[at + 6:at + 8] = (64).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(FerkitError, match="not a readable zip file: .*zip file version 6.4"):
        load_fer(path)


def test_a_zip_with_windows_backslashes_reads_like_one_with_slashes(tmp_path, real_members):
    path = tmp_path / "windows.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train\\happy\\", b"")  # its folder entries too
        for name, data in real_members[:3]:
            archive.writestr(name.replace("/", "\\"), data)
    data = load_fer(path)
    assert len(data) == 3 and not data.skipped
    assert list(data.labels) == list(load_fer(_zip_of(tmp_path / "plain.zip", real_members[:3])).labels)


def _zip_of(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


HEADER_FIELDS = {"flags": (6, 8), "method": (8, 10)}  # a field's offset in a local and a central header


def _edit_headers(path, field, edit, named=b""):
    """`edit` applied to `field` of every local and central header in the zip at `path` (of the
    members whose name starts with `named`): the flags and methods zipfile does not write."""
    raw = bytearray(path.read_bytes())
    local, central = HEADER_FIELDS[field]
    for at in (i for i in range(len(raw) - 4) if raw[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02")):
        is_central = raw[at + 2] == 1
        if raw[at + (46 if is_central else 30):].startswith(named):
            raw[at + (central if is_central else local)] = edit(raw[at + (central if is_central else local)])
    path.write_bytes(bytes(raw))


def test_a_folder_holding_fer2013_csv_reads_it_and_several_csvs_are_named(tmp_path):
    pixels = " ".join(["7"] * 2304)
    extracted = tmp_path / "fer2013"  # what fer2013.tar.gz extracts to
    extracted.mkdir()
    (extracted / "fer2013.csv").write_text(f"emotion,pixels,Usage\n3,{pixels},Training\n")
    (extracted / "README").write_text("the dataset's readme")
    cv2.imwrite(str(extracted / "preview.png"), np.zeros((48, 48), np.uint8))  # it had hidden the CSV
    assert [EMOTIONS[i] for i in load_fer(extracted).labels] == ["happy"]
    kaggle = tmp_path / "kaggle.zip"  # the competition's download: several tables, none of them images
    with zipfile.ZipFile(kaggle, "w") as archive:
        for name in ("train.csv", "test.csv", "icml_face_data.csv"):
            archive.writestr(name, f"emotion,pixels\n3,{pixels}\n")
        archive.writestr("fer2013.tar.gz", b"...")
    with pytest.raises(FerkitError, match=r"holds 3 CSV files and no images in emotion folders \(icml_face_data.csv, test.csv, train.csv\)"):
        load_fer(kaggle)


def test_a_quote_never_closed_in_a_csv_is_an_error_not_a_few_faces(tmp_path):
    good = " ".join(["1"] * 2304)
    path = tmp_path / "f.csv"
    rows = [f'3,"{good}",Training'] * 5
    rows[1] = f'3,"{good},Training'  # its closing quote lost: the rows after it would be one field
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    with pytest.raises(FerkitError, match="line .*: a field runs over several lines .*quote"):
        load_fer(path)


def test_csv_usage_takes_the_folder_names_too_and_names_the_rest(tmp_path, caplog):
    pixels = " ".join(["7"] * 2304)
    path = tmp_path / "f.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(f"3,{pixels},{usage}\n"
                                                       for usage in ("train", "Test", "validation", "dev", "dev")))
    assert list(load_fer(path).usage) == ["train", "public", "val", "", ""]
    assert "Usage values ferkit does not know, read as no usage: 'dev' (2)" in caplog.text


def test_zip_ignores_os_metadata(tmp_path, real_members):
    path = tmp_path / "mac.zip"
    with zipfile.ZipFile(path, "w") as archive:
        name, data = real_members[0]
        archive.writestr(name, data)
        archive.writestr("__MACOSX/" + name, b"junk")
        archive.writestr("train/.DS_Store", b"junk")
        folder, _, file = name.rpartition("/")
        archive.writestr(f"{folder}/._{file}", b"junk")  # macOS' companion
    assert len(load_fer(path)) == 1 and not load_fer(path).skipped


def test_images_in_a_hidden_folder_are_counted_not_dropped_in_silence(tmp_path, real_members):
    """A zip made of ~/.data/ had "no images found" and no word of the 2 it held."""
    path = _zip_of(tmp_path / "hidden.zip", [(f".data/{name}", data) for name, data in real_members[:2]])
    with pytest.raises(FerkitError, match=r"passed over: 2 hidden image \(a name or folder starting with '\.'\)"):
        load_fer(path)


def test_splits_do_not_depend_on_the_archive_order(tmp_path, synthetic_folder):
    """Seeded splits index into the loaded order, so a re-zipped copy must load like the folder."""
    files = sorted(p for p in synthetic_folder.rglob("*") if p.is_file())
    shuffled = [files[i] for i in np.random.default_rng(1).permutation(len(files))]
    path = tmp_path / "rezipped.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in shuffled:
            archive.write(file, file.relative_to(synthetic_folder).as_posix())
    from_folder, from_zip = load_fer(synthetic_folder), load_fer(path)
    assert np.array_equal(from_folder.images, from_zip.images)
    folder_val = make_splits(from_folder, "official", seed=0).val
    zip_val = make_splits(from_zip, "official", seed=0).val
    assert np.array_equal(folder_val.images, zip_val.images)


def test_other_datasets_folder_names_are_the_same_classes(tmp_path):
    """Kaggle's copies of FER2013 name folders disgusted, fearful, surprised, ..."""
    images, _ = synthetic_faces(("angry",), 7)
    for image, folder in zip(images, ("Angry", "disgusted", "fearful", "happiness", "neutral", "sadness", "surprised")):
        write_folder(tmp_path, [image], [folder], "train")
    assert [EMOTIONS[i] for i in load_fer(tmp_path).labels] == list(EMOTIONS)


def test_a_semicolon_csv_shows_its_header(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text(f"emotion;pixels;Usage\n3;{' '.join(['1'] * 2304)};Training\n")
    with pytest.raises(FerkitError, match="its header: 'emotion;pixels;Usage'; saved with semicolons"):
        load_fer(path)


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("empty", "data file is empty: "),
    ("no_columns", "missing column"),
    ("no_usable_rows", r"no usable rows in .*\(1 bad emotion code"),
    ("header_only", "it has no data rows"),
    ("no_emotion_folders", "no images found"),
    ("bad_zip", "not a readable zip"),
    ("unknown_type", "unsupported data"),
    ("tar_gz", r"unsupported data .*fer2013\.tar\.gz: .* \(extract this archive first\)"),
    ("zip_in_zip", r"no images found .*\(passed over: 1 archive inside \(give it to ferkit itself, or extract it\)\)"),
])
def test_bad_sources_give_one_line_errors(tmp_path, case, message):
    path = tmp_path / "data"
    if case == "empty":
        path = tmp_path / "empty.csv"
        path.write_bytes(b"")
    elif case == "no_columns":
        path = tmp_path / "wrong.csv"
        path.write_text("label,image\n1,2\n")
    elif case in ("no_usable_rows", "header_only"):
        path = tmp_path / "rows.csv"
        path.write_text("emotion,pixels,Usage\n" + ("9," + " ".join(["1"] * 2304) + ",Training\n"
                                                   if case == "no_usable_rows" else ""))
    elif case == "no_emotion_folders":
        (path / "cats").mkdir(parents=True)
        cv2.imwrite(str(path / "cats" / "a.png"), np.zeros((48, 48), np.uint8))
    elif case == "bad_zip":
        path = tmp_path / "broken.zip"
        path.write_bytes(b"PK\x03\x04 truncated")
    elif case == "unknown_type":
        path = tmp_path / "data.txt"
        path.write_text("hello")
    elif case == "tar_gz":  # Kaggle's download
        path = tmp_path / "fer2013.tar.gz"
        path.write_bytes(b"\x1f\x8b not really")
    elif case == "zip_in_zip":  # had read as "1 file outside an emotion folder (.)"
        path = tmp_path / "outer.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("fer2013.zip", b"PK\x05\x06" + bytes(18))
    with pytest.raises(FerkitError, match=message) as info:
        load_fer(path)
    assert "\n" not in str(info.value)


# --- splits ------------------------------------------------------------------------------------

def _dataset(tmp_path, per_class=50):
    images, labels = synthetic_faces(("angry", "fear", "happy", "sad"), per_class)
    return load_fer(write_folder(tmp_path, images, labels))


def test_random_split_is_stratified_and_seeded(tmp_path):
    data = _dataset(tmp_path)
    a = make_splits(data, "random", (0.8, 0.1, 0.1), seed=3)
    b = make_splits(data, "random", (0.8, 0.1, 0.1), seed=3)
    c = make_splits(data, "random", (0.8, 0.1, 0.1), seed=4)
    assert a.sizes() == {"train": 160, "val": 20, "test": 20}
    assert np.bincount(a.test.labels, minlength=len(EMOTIONS)).max() == 5  # 5 of each present class
    assert np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.test.images, c.test.images)
    assert "random" in a.description


def _with_repeats(usage: str = "train") -> FerDataset:
    """200 faces of 4 classes, then a copy of each of the first 60 (same label): FER2013's Training
    part holds 1,035 groups of identical faces."""
    images, labels = synthetic_faces(("angry", "fear", "happy", "sad"), 50)
    names = ("angry", "fear", "happy", "sad")
    images, labels = np.array(images), np.array([names.index(n) for n in labels])
    order = np.random.default_rng(0).permutation(len(labels))  # copies of every class, not of angry alone
    images, labels = images[order], labels[order]
    images, labels = np.concatenate([images, images[:60]]), np.concatenate([labels, labels[:60]])
    return FerDataset(images, labels, np.array([usage] * len(labels)), "syn", classes=names)


def test_drop_repeats_leaves_out_the_held_out_faces_that_repeat_a_training_face():
    data = _with_repeats()
    kept = make_splits(data, "random", (0.6, 0.2, 0.2), seed=1)
    dropped = make_splits(data, "random", (0.6, 0.2, 0.2), seed=1, drop_repeats=True)
    seen = {name: repeats_training(getattr(kept, name), kept.train) for name in ("val", "test")}
    assert seen["val"].sum() and seen["test"].sum()  # the split as drawn tests faces it trained on
    assert np.array_equal(dropped.train.images, kept.train.images)  # training is the same draw
    for name in ("val", "test"):
        part, before = getattr(dropped, name), getattr(kept, name)
        assert not repeats_training(part, dropped.train).any()
        assert np.array_equal(part.images, before.images[~seen[name]])  # the rest, in their order
        assert np.array_equal(part.labels, before.labels[~seen[name]])
    assert dropped.description.endswith(f"left out as repeats of training faces: {seen['val'].sum()} validation, "
                                        f"{seen['test'].sum()} test faces")
    assert "repeats" not in kept.description


def test_drop_repeats_keeps_fer2013s_own_test_part_whole():
    """PublicTest is the benchmark as published: only the validation faces carved out of Training go."""
    train = _with_repeats()
    public = FerDataset(train.images[:40], train.labels[:40], np.array(["public"] * 40), "syn",
                        classes=train.classes)
    data = FerDataset(np.concatenate([train.images, public.images]), np.concatenate([train.labels, public.labels]),
                      np.concatenate([train.usage, public.usage]), "syn", classes=train.classes)
    splits = make_splits(data, "official", (0.8, 0.2, 0.0), seed=0, drop_repeats=True)
    assert len(splits.test) == 40 and repeats_training(splits.test, splits.train).any()
    assert not repeats_training(splits.val, splits.train).any()
    assert "validation faces" in splits.description and "test faces" not in splits.description


def test_drop_repeats_that_would_leave_nothing_to_validate_on_says_so():
    images = np.repeat(np.arange(4, dtype=np.uint8), 48 * 48 * 5).reshape(20, 48, 48)  # 4 faces, 5 copies each
    data = FerDataset(images, np.arange(20) % 2, np.array(["train"] * 20), "copies", classes=("angry", "happy"))
    with pytest.raises(FerkitError, match="every one of the 4 faces drawn to validate on repeats a training face: "
                                          ".*--drop-repeats off"):
        make_splits(data, "random", (0.6, 0.2, 0.2), seed=0, drop_repeats=True)
    assert len(make_splits(data, "random", (0.6, 0.2, 0.2), seed=0).val) == 4


def test_drop_repeats_changes_nothing_where_no_face_repeats(tmp_path):
    data = _dataset(tmp_path)
    a = make_splits(data, "random", (0.8, 0.1, 0.1), seed=3)
    b = make_splits(data, "random", (0.8, 0.1, 0.1), seed=3, drop_repeats=True)
    assert a.fingerprint() == b.fingerprint() and a.description == b.description


def test_face_keys_tell_faces_apart_by_every_pixel():
    faces = np.zeros((3, 48, 48), np.uint8)
    faces[1, 47, 47] = 1
    keys = face_keys(faces)
    assert keys.dtype == np.uint64 and keys[0] != keys[1] and keys[0] == keys[2]


def test_official_split_uses_usage(synthetic_folder):
    data, _ = select_classes(load_fer(synthetic_folder), ("angry", "happy", "sad", "surprise"))
    splits = make_splits(data, "official", (0.8, 0.1, 0.1), seed=0)
    assert splits.sizes() == {"train": 216, "val": 24, "test": 60}
    assert "test = PublicTest" in splits.description


def test_official_split_with_private_test(tmp_path):
    path = tmp_path / "f.csv"
    px = " ".join(["9"] * 2304)
    rows = [f"{code},{px},{usage}" for usage in ("Training", "PublicTest", "PrivateTest")
            for code in (0, 3) for _ in range(4)]
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    data, _ = select_classes(load_fer(path), ("angry", "happy"))
    splits = make_splits(data, "official")
    assert splits.sizes() == {"train": 8, "val": 8, "test": 8}
    assert "val = PublicTest, test = PrivateTest" in splits.description


def test_official_split_validates_on_a_validation_folder_beside_a_test_part(tmp_path):
    """The data's own validation part picks the kept epoch; Training is not carved into."""
    images, labels = synthetic_faces(("angry", "happy"), 10)
    write_folder(tmp_path, images, labels, "train")
    write_folder(tmp_path, images[:6], labels[:6], "val", prefix="face")
    write_folder(tmp_path, images[:8], labels[:8], "PrivateTest", prefix="face")
    splits = make_splits(load_fer(tmp_path), "official")
    assert splits.sizes() == {"train": 20, "val": 6, "test": 8}
    assert "val = the validation folder, test = PrivateTest" in splits.description


def test_a_face_is_in_the_part_its_folder_says_whatever_its_file_name(tmp_path):
    """Training_ files moved into val/ were folded back into Training (and 10% of it carved out
    instead), PublicTest_ ones moved into train/ became validation faces. Within test/, FER2013's
    file names still tell PublicTest from PrivateTest; `testing/` is a test folder too."""
    images, labels = synthetic_faces(("angry", "happy"), 10)
    write_folder(tmp_path, images, labels, "train", prefix="Training")
    write_folder(tmp_path, images[:4], labels[:4], "train", prefix="PublicTest")
    write_folder(tmp_path, images[:6], labels[:6], "val", prefix="Training")
    write_folder(tmp_path, images[:3], labels[:3], "test", prefix="PrivateTest")
    write_folder(tmp_path, images[:5], labels[:5], "testing", prefix="PublicTest")
    write_folder(tmp_path, images[:2], labels[:2], "holiday", prefix="PrivateTest")  # no part of its own
    write_folder(tmp_path, images[:7], labels[:7], "PrivateTest", prefix="PublicTest")  # the folders name them
    write_folder(tmp_path, images[:9], labels[:9], "PublicTest", prefix="PrivateTest")
    assert Counter(load_fer(tmp_path).usage) == {"train": 24, "val": 6, "private": 12, "public": 14}


def test_official_split_tests_on_a_validation_folder_alone(tmp_path):
    """Kaggle's images/train + images/validation: the validation folder is the only held-out part,
    so it is the test set, and validation comes out of Training as for train/ + test/."""
    images, labels = synthetic_faces(("angry", "happy"), 10)
    write_folder(tmp_path / "images", images, labels, "train", prefix="face")
    write_folder(tmp_path / "images", images[:8], labels[:8], "validation", prefix="face")
    splits = make_splits(load_fer(tmp_path), "official", (0.8, 0.1, 0.1), seed=0)
    assert splits.sizes() == {"train": 18, "val": 2, "test": 8}
    assert "of Training (seed 0), test = the validation folder" in splits.description


def test_official_split_says_what_it_leaves_out(tmp_path, caplog):
    """With both of FER2013's test parts a val/ folder has no place in its protocol, nor has a
    folder of no known part: their faces are left out, and that is said."""
    images, labels = synthetic_faces(("angry", "happy"), 10)
    write_folder(tmp_path, images, labels, "train")
    write_folder(tmp_path, images[:6], labels[:6], "val", prefix="face")
    write_folder(tmp_path, images[:3], labels[:3], "extra", prefix="face")
    write_folder(tmp_path, images[:4], labels[:4], "PublicTest", prefix="face")
    write_folder(tmp_path, images[:8], labels[:8], "PrivateTest", prefix="face")
    splits = make_splits(load_fer(tmp_path), "official")
    assert splits.sizes() == {"train": 20, "val": 4, "test": 8}
    assert "; 9 faces of no FER2013 part left out" in splits.description
    assert "9 faces are neither Training nor PublicTest/PrivateTest" in caplog.text


def test_linked_folders_are_read_once_each(tmp_path, caplog):
    images, labels = synthetic_faces(("angry", "happy"), 4)
    one = write_folder(tmp_path / "one", images, labels, split=None, prefix="face")
    two = write_folder(tmp_path / "two", images, labels, split=None, prefix="face")
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "angry").symlink_to(one / "angry")  # a class linked in
    (data / "test").symlink_to(two)  # a split linked in
    (data / "train" / "happy").symlink_to(two / "happy")  # read already, as test/happy
    (data / "train" / "loop").symlink_to(data)  # a link back up the tree
    loaded = load_fer(data)
    parts = Counter(zip(loaded.usage, (EMOTIONS[i] for i in loaded.labels)))
    assert parts == {("train", "angry"): 4, ("public", "angry"): 4, ("public", "happy"): 4}
    assert caplog.text.count("already read (through a link)") == 2


def test_no_images_found_says_what_was_passed_over(tmp_path):
    (tmp_path / "happy").mkdir()
    for i in range(3):
        (tmp_path / "happy" / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(FerkitError, match=r"passed over: 3 unreadable image"):
        load_fer(tmp_path)


def test_official_split_needs_usage(tmp_path):
    images, labels = synthetic_faces(("fear", "neutral"), 5)
    data = load_fer(write_folder(tmp_path, images, labels, split=None))
    with pytest.raises(FerkitError, match="--split random"):
        make_splits(data, "official")


def test_held_out_faces_alone_are_no_data_to_train_on_and_say_so(tmp_path):
    """A copy of FER2013's test/ folder alone had been said to name no FER2013 part at all."""
    images, labels = synthetic_faces(("fear", "neutral"), 5)
    data = load_fer(write_folder(tmp_path, images, labels, "test", prefix="PublicTest"))
    with pytest.raises(FerkitError, match=r"holds FER2013's held-out faces \(10 of PublicTest\) but none of its "
                                          r"Training part"):
        make_splits(data, "official")


@pytest.mark.parametrize("parts, val, test", [
    ({"test": "PublicTest"}, None, "PublicTest"),
    ({"PublicTest": "face", "PrivateTest": "face"}, "PublicTest", "PrivateTest"),
    ({"test": "PrivateTest", "val": "face"}, "the validation folder", "PrivateTest"),
    ({"validation": "face"}, None, "the validation folder"),
])
def test_the_held_out_parts_the_official_split_would_use_are_found_without_training(tmp_path, parts, val, test):
    """What evaluate scores on a copy of FER2013's held-out parts alone: the part the official split
    would use, or None where it draws that part from Training."""
    from ferkit.data.splits import held_out_alone

    for count, (folder, prefix) in enumerate(parts.items(), start=3):
        images, labels = synthetic_faces(("fear", "neutral"), count)
        write_folder(tmp_path, images, labels, folder, prefix=prefix)
    data = load_fer(tmp_path)
    found = {name: held_out_alone(data, name) for name in ("val", "test")}
    assert [None if part is None else part[1] for part in found.values()] == [  # as the split's description says
        val and f"val = {val}, test = {test}", f"test = {test}"]
    images, labels = synthetic_faces(("fear", "neutral"), 2)
    write_folder(tmp_path, images, labels, "train")
    full = make_splits(load_fer(tmp_path), "official")
    for name, part in found.items():  # the same faces the official split takes once Training is there
        if part is not None:
            assert np.array_equal(part[0].images, getattr(full, name).images)


def test_a_csv_may_name_its_emotions_as_folders_do(tmp_path):
    """Its emotion column read as FER2013's codes alone: every row of names had been a "bad emotion
    code", though an emotion folder of the same name is read."""
    px = " ".join(["9"] * 2304)
    rows = [f"{name},{px},Training" for name in ("Happy", "anger", "surprised", "3", "contempt")]
    (tmp_path / "f.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    data = load_fer(tmp_path / "f.csv")
    assert data.class_counts() == {"angry": 1, "happy": 2, "surprise": 1} and data.skipped == {"bad emotion code": 1}


def test_training_faces_alone_are_said_to_lack_a_held_out_part(tmp_path):
    """A CSV whose held-out rows have a Usage value ferkit does not know ('holdout') had been said to
    name no FER2013 part at all, though most of its rows said Training."""
    px = " ".join(["9"] * 2304)
    rows = [f"{code},{px},{usage}" for usage in ("Training", "holdout") for code in (0, 3) for _ in range(4)]
    (tmp_path / "f.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    data, _ = select_classes(load_fer(tmp_path / "f.csv"), ("angry", "happy"))
    with pytest.raises(FerkitError, match=r"holds 8 Training faces but none held out to test on .*--split random"):
        make_splits(data, "official")


def test_a_folder_too_small_to_stratify_is_split_at_random(tmp_path):
    # 4 classes x 3 training faces: a 10% validation part (2 faces) cannot hold every class.
    images, labels = synthetic_faces(("angry", "fear", "happy", "sad"), 3)
    write_folder(tmp_path, images, labels, "train", "Training")
    data = load_fer(write_folder(tmp_path, images[:4], labels[:4], "test", "PublicTest"))
    splits = make_splits(data, "official", (0.8, 0.1, 0.1), seed=0)
    assert splits.sizes() == {"train": 10, "val": 2, "test": 4}
    assert "train/val = random 90%/10% of Training" in splits.description  # not said to be stratified


def test_a_class_of_one_face_is_trained_on_and_the_others_stay_stratified(tmp_path, caplog):
    """One disgust face had turned stratification off for every class, in silence: 1 happy face of
    26 to test on, 8 fear faces, with "random stratified" in the run's description."""
    classes = ("angry", "disgust", "fear", "happy", "sad")
    images, labels = synthetic_faces(classes, 50)
    keep = [i for i, name in enumerate(labels) if name != "disgust"] + [labels.index("disgust")]
    data, _ = select_classes(load_fer(write_folder(tmp_path, [images[i] for i in keep], [labels[i] for i in keep],
                                                   split=None)),
                             classes)
    splits = make_splits(data, "random", (0.8, 0.1, 0.1), seed=0)
    for part in (splits.test, splits.val):  # 21 and 18 faces of 4 classes of 50: 4 or 5 or 6 each
        counts = np.bincount(part.labels, minlength=5)
        assert counts[1] == 0 and counts[[0, 2, 3, 4]].max() - counts[[0, 2, 3, 4]].min() <= 1, counts
    assert np.bincount(splits.train.labels, minlength=5)[1] == 1
    assert splits.description.startswith("random stratified 80/10/10")
    assert caplog.text.count("only one face of disgust to split here: trained on") == 1
    caplog.clear()  # a split too small to stratify: drawn at random, and nothing said to be trained on
    kept = [0, 50, 51, 100, 101]  # one angry face, two disgust, two fear
    tiny, _ = select_classes(load_fer(write_folder(tmp_path / "tiny", [images[i] for i in kept],
                                                   [labels[i] for i in kept], split=None)), classes[:3])
    assert not make_splits(tiny, "random", (0.6, 0.2, 0.2), seed=4).description.startswith("random stratified")
    assert "split at random, not stratified by class" in caplog.text and "trained on" not in caplog.text


def test_one_face_cannot_be_split(tmp_path):
    images, labels = synthetic_faces(("happy",), 1)
    data = load_fer(write_folder(tmp_path, images, labels, split=None))
    with pytest.raises(FerkitError, match="cannot be split"):
        make_splits(data, "random")


@pytest.mark.parametrize("kind", ["random", "official"])
@pytest.mark.parametrize("fractions", [(0.8, 0.3, 0.1), (1.0, 0.0, 0.0), (0.9, 0.0, 0.1), (0.9, -0.1, 0.2),
                                       (0.5, float("nan"), 0.5), (float("nan"),) * 3])
def test_bad_fractions(tmp_path, fractions, kind):
    with pytest.raises(FerkitError, match="fractions"):
        make_splits(_dataset(tmp_path), kind, fractions)


def test_the_official_split_needs_only_a_val_share(synthetic_folder):
    """It uses no other share: `--fractions 0.9,0.1,0` had been refused as not three positive numbers."""
    data = load_fer(synthetic_folder)
    splits = make_splits(data, "official", (0.9, 0.1, 0.0))
    assert splits.sizes() == make_splits(data, "official", (0.8, 0.1, 0.1)).sizes()
    with pytest.raises(FerkitError, match=r"three positive numbers \(a share of 0 is for the official split's"):
        make_splits(data, "random", (0.9, 0.1, 0.0))  # why 0.9,0.1,0 works for one and not the other
    tiny = make_splits(data, "random", (0.05, 0.05, 0.9), seed=0).description
    assert tiny.startswith("random") and " 5/5/90 train/val/test" in tiny
    assert " 1.5/1.5/97 " in make_splits(data, "random", (0.015, 0.015, 0.97), seed=0).description  # had read 2/2/97
    with pytest.raises(FerkitError, match="leaves none to train on"):  # sklearn's traceback, before
        make_splits(data, "official", (0.001, 0.999, 0.0))


def test_select_classes_relabels_and_counts(tmp_path):
    data = _dataset(tmp_path)
    subset, left_out = select_classes(data, ("fear", "sad"))
    assert left_out == 100 and len(subset) == 100
    assert set(subset.labels) == {0, 1}
    # the subset's counts name its own classes (they had read its labels 0, 1 as angry, disgust)
    assert subset.class_counts() == {"fear": 50, "sad": 50}
    again, left_out = select_classes(subset, ("sad",))
    assert left_out == 50 and again.class_counts() == {"sad": 50} and set(again.labels) == {0}


def test_requested_class_without_images_is_an_error(tmp_path):
    """With the way on: a data set of one's own without disgust met the default's seven classes (and
    no --classes of one class, which is refused)."""
    with pytest.raises(FerkitError, match=r"no images of class\(es\) disgust in [^:]*$"):
        select_classes(_dataset(tmp_path), ("disgust", "sad"))
    with pytest.raises(FerkitError, match=r"no images of class\(es\) disgust in .*: train on the others with "
                                          r"--classes fear,sad$"):
        select_classes(_dataset(tmp_path), ("disgust", "fear", "sad"))


# --- preprocessing -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 1), (30, 40, 3), (30, 40, 4)])
def test_to_gray_accepts_gray_bgr_bgra(shape):
    assert to_gray(np.full(shape, 100, np.uint8)).shape == (30, 40)


def test_float_faces_in_0_to_1_are_scaled_like_uint8_ones():
    face = np.random.default_rng(0).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    expected = to_model_input([face], 48)
    np.testing.assert_allclose(to_model_input([face / 255.0], 48), expected, atol=1)
    np.testing.assert_array_equal(to_model_input([face.astype(np.float32)], 48), expected)


def test_a_0_to_1_image_with_a_little_overshoot_is_still_read_as_0_to_1():
    """Cubic resizing of a 0..1 image overshoots to 1.1; one such pixel turned the image black."""
    from ferkit.data.preprocess import to_uint8

    image = np.random.default_rng(0).random((30, 40))
    image[0, 0] = 1.1
    expected = (image * 255).clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8(image), expected)
    assert expected[1:].mean() > 100


def test_a_nan_or_infinite_pixel_leaves_a_0_to_1_image_0_to_1():
    """One NaN pixel made the whole image read as 0..255, all black: no face found."""
    from ferkit.data.preprocess import to_uint8

    image = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    expected = (image * 255).astype(np.uint8)
    image[0, :3] = np.nan, np.inf, -np.inf
    expected[0, :3] = 0, 255, 0
    np.testing.assert_array_equal(to_uint8(image), expected)
    assert to_uint8(np.full((2, 2), np.nan)).tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_16_bit_values_in_wider_ints_are_scaled_like_uint16(dtype):
    """Older Pillow reads 16-bit PNGs as 32-bit ints: clipped at 255, they were all white."""
    from ferkit.data.preprocess import to_uint8

    deep = np.random.default_rng(0).integers(0, 65536, (30, 40))
    np.testing.assert_array_equal(to_uint8(deep.astype(dtype)), to_uint8(deep.astype(np.uint16)))
    small = np.arange(256).reshape(16, 16)  # 0..255 in an int array stays as it is
    np.testing.assert_array_equal(to_uint8(small.astype(dtype)), small.astype(np.uint8))
    dark = np.array([[0, 1, 2]], dtype)  # the 0..1 reading is for floats only
    np.testing.assert_array_equal(to_uint8(dark), dark.astype(np.uint8))


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_16_bit_images_are_scaled_by_the_bits_their_pixels_use(bits):
    """A camera's 12-bit data in a 16-bit file (0..4095), or 8-bit values saved as 16-bit, had been
    scaled as 0..65535: nearly black, or black, and no face found."""
    from ferkit.data.preprocess import to_uint8

    gray = np.random.default_rng(0).integers(0, 256, (30, 40))
    gray[0, 0] = 255  # the brightest pixel, which tells the depth
    top = (1 << bits) - 1
    deep = (gray * top + 127) // 255  # what a camera of `bits` bits stores for the same scene
    assert np.abs(to_uint8(deep.astype(np.uint16)).astype(int) - gray).max() <= 1
    assert to_uint8(np.zeros((2, 2), np.uint16)).tolist() == [[0, 0], [0, 0]]


def test_16_bit_images_are_scaled_without_wide_copies():
    """The 32-bit arithmetic took four copies at twice and four times the size: 2 GB for a 50-megapixel
    16-bit photo, from an upload under 1 MB."""
    import tracemalloc

    from ferkit.data.preprocess import to_uint8

    image = np.full((1000, 1000, 3), 4095, np.uint16)  # 6 MB
    image[0, 0] = 0
    tracemalloc.start()
    out = to_uint8(image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 255
    assert peak < 1.2 * out.nbytes  # the 3-MB answer and a 64-KB table


def test_an_empty_16_bit_array_stays_empty():
    from ferkit.data.preprocess import to_uint8

    assert to_uint8(np.zeros((0, 5), np.uint16)).shape == (0, 5)


def test_to_gray_rejects_odd_shapes():
    with pytest.raises(ValueError):
        to_gray(np.zeros((5, 5, 2), np.uint8))


def test_model_input_batch():
    batch = to_model_input([np.zeros((48, 48), np.uint8), np.full((100, 80, 3), 255, np.uint8)], 64)
    assert batch.shape == (2, 64, 64, 1) and batch.dtype == np.float32
    assert batch[1].min() == 255 and batch[0].max() == 0
    assert to_model_input([], 48).shape == (0, 48, 48, 1)


def test_a_non_square_crop_is_squared_by_its_edges_not_stretched():
    """As crop_face frames detected faces: a tall crop from another detector kept in proportion."""
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (60, 40), np.uint8)
    square = to_model_input([tall], 60)[0, :, :, 0]
    np.testing.assert_array_equal(square[:, 10:50], tall)  # the crop itself, unscaled, in the middle
    np.testing.assert_array_equal(square[:, :10], np.repeat(tall[:, :1], 10, axis=1))  # its edges repeated
    np.testing.assert_array_equal(square[:, 50:], np.repeat(tall[:, -1:], 10, axis=1))
    wide = to_model_input([rng.integers(0, 256, (41, 60, 3), np.uint8)], 60)[0, :, :, 0]
    assert wide.shape == (60, 60) and (wide[:9] == wide[9]).all() and (wide[50:] == wide[49]).all()  # 9 + 41 + 10


def test_a_non_square_training_image_is_squared_as_at_inference(tmp_path):
    (tmp_path / "sad").mkdir()
    tall = np.full((96, 48), 255, np.uint8)
    tall[:, 0] = 0  # a dark left edge: squaring repeats it over the left quarter, stretching would not
    cv2.imwrite(str(tmp_path / "sad" / "tall.png"), tall)
    face = load_fer(tmp_path).images[0]
    assert (face[:, :11] == 0).all() and (face[:, 13:] == 255).all()
    np.testing.assert_array_equal(face, to_model_input([tall], 48)[0, :, :, 0])


def test_a_long_thin_crop_is_squared_without_a_square_of_its_length():
    """Squared at full size, a 40000x40 strip took a 40000x40000 array (1.6 GB) on its way to 48x48."""
    import tracemalloc

    strip = np.full((40, 40000), 200, np.uint8)
    tracemalloc.start()
    face = to_model_input([strip], 48)[0, :, :, 0]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6 and face.shape == (48, 48) and (face == 200).all()


def test_decoding_a_corrupt_file_says_nothing_of_opencvs_own(capfd):
    """ferkit says a file is unreadable in one line; OpenCV's own `[ERROR] imdecode_ ...` lines came
    before it. Its log level is back as it was afterwards, also after threads decoded at once."""
    import threading

    from ferkit.data.decoding import decode_bgr

    corrupt_gif = b"GIF89a" + bytes([16, 0, 16, 0, 0x80, 0, 0]) + bytes(40)
    cut_png = b"\x89PNG\r\n\x1a\n" + bytes(30)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    try:
        threads = [threading.Thread(target=lambda: [decode_bgr(corrupt_gif) for _ in range(50)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        assert decode_bgr(cut_png) is None
        for thread in threads:
            thread.join()
        assert cv2.utils.logging.getLogLevel() == cv2.utils.logging.LOG_LEVEL_WARNING
    finally:
        cv2.utils.logging.setLogLevel(level)
    err = capfd.readouterr().err
    assert "imdecode" not in err and "readHeader" not in err and "ERROR" not in err, err


@pytest.mark.parametrize("kind, seed", [("official", 1), ("random", 3)])  # seeds that drop the repeat
def test_each_face_keeps_the_name_of_its_file_through_classes_and_splits(tmp_path, kind, seed):
    """What predictions.csv says a face is: its file, whichever classes are kept, repeats dropped."""
    images, labels = synthetic_faces(("angry", "happy", "sad", "surprise"), 20)
    images[5] = images[60]  # an angry face that repeats a sad one pixel for pixel: one of them dropped if held out
    write_folder(tmp_path, images, labels, "train", "Training")
    write_folder(tmp_path, *synthetic_faces(("angry", "happy", "sad", "surprise"), 5, seed=1), "test", "PublicTest")
    data, _ = select_classes(load_fer(tmp_path), ("sad", "angry", "surprise"))
    splits = make_splits(data, kind, (0.6, 0.2, 0.2), seed=seed, drop_repeats=True)
    assert "left out as repeats of training faces: 1 " in splits.description
    for part in (splits.train, splits.val, splits.test):
        assert len(part.names) == len(part) > 0
        for image, label, name in zip(part.images, part.labels, part.names):
            assert name.split("/")[1] == data.classes[label]  # train/<class>/..., test/<class>/...
            assert np.array_equal(cv2.imread(str(tmp_path / name), cv2.IMREAD_GRAYSCALE), image)
    assert not {name.split("/")[1] for part in (splits.train, splits.val, splits.test) for name in part.names} - {
        "sad", "angry", "surprise"}


def test_a_zips_faces_are_named_by_their_path_in_it(tmp_path):
    write_folder(tmp_path / "faces", *synthetic_faces(("happy",), 2), split="test", prefix="PublicTest")
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as archive:
        for path in sorted((tmp_path / "faces").rglob("*.png")):
            archive.write(path, path.relative_to(tmp_path).as_posix())
    assert list(load_fer(tmp_path / "faces.zip").names) == ["faces/test/happy/PublicTest_00000.png",
                                                           "faces/test/happy/PublicTest_00001.png"]


def test_a_share_of_the_training_faces_keeps_each_class_in_proportion_and_the_rest_whole():
    from ferkit.data.splits import train_share

    images, labels = synthetic_faces(("angry", "happy", "sad"), 40)
    names = ("angry", "happy", "sad")
    data = FerDataset(np.stack(images), np.array([names.index(n) for n in labels]), np.array(["train"] * 120), "syn",
                      classes=names, names=np.array([f"f{i}" for i in range(120)]))
    data.labels[:4] = 2  # sad: 44 faces, angry 36, happy 40
    full = make_splits(data, "random", (0.5, 0.25, 0.25), seed=0)
    cut = train_share(make_splits(data, "random", (0.5, 0.25, 0.25), seed=0), 0.25, seed=0)
    counts = [np.bincount(part.labels, minlength=3) for part in (full.train, cut.train)]
    assert list(counts[1]) == [round(n / 4) for n in counts[0]] and len(cut.train) < len(full.train)
    order = [list(full.train.names).index(name) for name in cut.train.names]
    assert order == sorted(order)  # the faces in their order, their images and names together
    assert all(np.array_equal(full.train.images[i], image) for i, image in zip(order, cut.train.images))
    for part in ("val", "test"):
        assert list(getattr(cut, part).names) == list(getattr(full, part).names)
    assert cut.description.endswith(f"; training part cut to 0.25 of its faces ({len(cut.train)} of "
                                    f"{len(full.train)}, each class in proportion)")
    again = train_share(make_splits(data, "random", (0.5, 0.25, 0.25), seed=0), 0.25, seed=0)
    assert list(again.train.names) == list(cut.train.names)  # as a resume rebuilds it
    assert train_share(make_splits(data, "random", (0.5, 0.25, 0.25), seed=0), 1.0, seed=0).description == \
        full.description
    given = make_splits(data, "random", (0.5, 0.25, 0.25), seed=0)
    half = train_share(given, 0.5, seed=0)
    assert len(given.train) == len(full.train)  # the splits given are left as they were
    assert set(cut.train.names) < set(half.train.names)  # a learning curve's smaller shares are in its larger
    tiny = train_share(make_splits(data, "random", (0.5, 0.25, 0.25), seed=0), 0.001, seed=0)
    assert sorted(tiny.train.labels) == [0, 1, 2]  # one face of each class at least, and said so
    assert tiny.description.endswith(f"(3 of {len(full.train)}, 3 of its 3 classes raised to one face)")
