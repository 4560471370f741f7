"""`ferkit predict`: lines, JSON, CSV and annotated copies, and every way a folder of images can go wrong."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.cli import main


def test_predict_lines_json_csv_and_failures(tiny_run, group_photo, tmp_path, capsys):
    import json

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "group.jpg"), group_photo[0])
    cv2.imwrite(str(photos / "sub" / "blank.png"), np.full((100, 100, 3), 255, np.uint8))
    (photos / "sub" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    (photos / "._group.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS metadata, not a photo
    args = ["predict", str(photos), "--model", str(tiny_run)]

    assert main(args + ["--csv", str(tmp_path / "faces.csv"), "--save-annotated", str(tmp_path / "ann")]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert sum("group.jpg" in line for line in lines) == 3
    assert any("blank.png" in line and "no face found" in line for line in lines)
    assert "corrupt.jpg" in err and "Traceback" not in err and "._group" not in out + err
    with open(tmp_path / "faces.csv", encoding="utf-8", newline="") as handle:
        rows = {(row["file"].split("/")[-1], row["face"]): row for row in csv.DictReader(handle)}
    assert len(rows) == 3 + 2  # three faces, and one row each for the file without a face and the corrupt one
    assert rows["blank.png", ""]["error"] == "no face found" and rows["blank.png", ""]["label"] == ""
    assert "not an image, or a corrupt one" in rows["corrupt.jpg", ""]["error"]
    assert rows["group.jpg", "0"]["error"] == "" and rows["group.jpg", "0"]["label"]
    assert (tmp_path / "ann" / "group_annotated.png").is_file()

    assert main(args + ["--json", "--csv", str(tmp_path / "both.csv")]) == 1  # a document and a table, one run
    report = json.loads(capsys.readouterr().out)
    by_file = {r["file"].split("/")[-1]: r for r in report["results"]}
    assert len(by_file["group.jpg"]["faces"]) == 3 and "error" in by_file["corrupt.jpg"]
    tables = [[row[:-1] for row in csv.reader((tmp_path / name).read_text(encoding="utf-8").splitlines())]
              for name in ("faces.csv", "both.csv")]
    assert tables[0] == tables[1] and len(tables[1]) == 1 + 5  # the same, but for the annotated copies


def test_predict_jsonl_gives_each_image_its_line(tiny_run, group_photo, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.jpg"), group_photo[0])
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((80, 80, 3), 255, np.uint8))
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--jsonl"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["file"]).name for line in lines] == ["a.jpg", "b.jpg", "c.png"]  # in order, one each
    assert len(lines[0]["faces"]) == 3 and "error" in lines[1] and lines[2]["faces"] == []
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path), "--json", "--jsonl"])


def test_predict_max_faces_and_detection_scores(tiny_run, group_photo, tmp_path):
    import json

    photo = tmp_path / "g.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    args = ["predict", str(photo), "--model", str(tiny_run)]
    every = json.loads(_json(args))
    assert [face["box"][0] for face in every] == [80, 223, 439]  # left to right
    assert all(0.7 <= face["detection_score"] <= 1 for face in every)
    two = json.loads(_json(args + ["--max-faces", "2"]))
    assert [face["box"] for face in two] == [every[0]["box"], every[2]["box"]]  # the small middle one left out
    threshold = sorted(face["detection_score"] for face in every)[1]  # the least sure one falls below it
    assert main(args + ["--csv", str(tmp_path / "f.csv"), "--min-detection-score", str(threshold)]) == 0
    with open(tmp_path / "f.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(float(row["detection_score"]) >= threshold for row in rows)


def _json(args) -> str:
    import contextlib
    import io
    import json

    with contextlib.redirect_stdout(io.StringIO()) as out:
        main(args + ["--json"])
    return json.dumps(json.loads(out.getvalue())["results"][0]["faces"])


@pytest.mark.parametrize("flag, value, message", [("--max-faces", "0", "at least 1"), ("--max-faces", "two", "whole number"),
                                                  ("--min-detection-score", "1.5", "above 0, at most 1"),
                                                  ("--min-detection-score", "0", "above 0, at most 1, got 0"),
                                                  ("--min-detection-score", "high", "above 0, at most 1"),
                                                  ("--min-face", "0", "at least 1"), ("--min-face", "-5", "at least 1")])
def test_face_filters_out_of_range_are_refused(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "x.jpg", flag, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_predict_finds_every_format_opencv_reads_and_names_empty_folders(tiny_run, astronaut, tmp_path,
                                                                          capsys, caplog):
    photos, empty = tmp_path / "mixed", tmp_path / "empty"
    photos.mkdir(), empty.mkdir()
    cv2.imwrite(str(photos / "a.GIF"), astronaut)
    cv2.imwrite(str(photos / "b.jpg"), astronaut)
    (photos / "b.jpg").rename(photos / "c.jfif")
    assert main(["predict", str(photos), str(empty), "--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert "a.GIF" in out and "c.jfif" in out and "no face found" not in out
    assert f"no image files in {empty}" in caplog.text


def test_predict_output_problems_are_one_line_and_come_first(tiny_run, group_photo, tmp_path, capsys):
    photo = tmp_path / "g.jpg"
    cv2.imwrite(str(photo), group_photo[0])
    for extra, message in ((["--csv", str(photo / "f.csv")], f"{photo} is a file, not a folder"),
                           (["--csv", str(tmp_path)], "it is a folder"),
                           (["--save-annotated", str(photo / "ann")], "is a file, not a folder"),
                           (["--csv", str(photo)], "is one of the inputs"),
                           (["--detector", "haar", "--tiny-faces"], "--tiny-faces works with"),
                           (["--detector", "haar", "--min-detection-score", "0.5"], "--min-detection-score works"),
                           (["--detector", "haar", "--no-align"], "--no-align works with")):
        assert main(["predict", str(photo), "--model", str(tiny_run), *extra]) == 2
        out, err = capsys.readouterr()
        assert message in err and len(err.strip().splitlines()) == 1
        assert out == ""  # said before any image was worked on
    csv_path = tmp_path / "new" / "folder" / "f.csv"
    assert main(["predict", str(photo), "--model", str(tiny_run), "--csv", str(csv_path)]) == 0
    assert len(csv_path.read_text().splitlines()) == 1 + 3


def test_predict_goes_on_past_files_it_cannot_read_or_write(tiny_run, group_photo, tmp_path, capsys,
                                                            monkeypatch):
    """A file that cannot be opened (permissions: tests run as root here, so simulated) or an
    annotated copy that cannot be written costs that image, not the rest of the folder."""
    from pathlib import Path

    for name in ("a.jpg", "locked.jpg", "z.jpg"):
        cv2.imwrite(str(tmp_path / name), group_photo[0])
    read_bytes = Path.read_bytes

    def locked(path):
        if path.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", locked)
    table = tmp_path / "out" / "faces.csv"
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--csv", str(table)]) == 1
    out, err = capsys.readouterr()
    assert "locked.jpg: Permission denied" in err and "Traceback" not in err
    assert out.count("z.jpg") == 3 and len(table.read_text().splitlines()) == 1 + 6 + 1  # + locked.jpg's row

    def full_disk(path, data):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert main(["predict", str(tmp_path / "a.jpg"), str(tmp_path / "z.jpg"), "--model", str(tiny_run),
                 "--save-annotated", str(tmp_path / "ann"), "--csv", str(table)]) == 1
    assert capsys.readouterr().err.count("No space left on device") == 2
    lines = table.read_text().splitlines()
    assert len(lines) == 1 + 6 and all("cannot write" in line for line in lines[1:])


def test_annotated_copies_of_same_named_photos_do_not_overwrite(tiny_run, group_photo, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.jpg"), group_photo[0])
    main(["predict", str(tmp_path / "a"), str(tmp_path / "b"), "--model", str(tiny_run),
          "--save-annotated", str(tmp_path / "out"), "--json"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_annotated-2.png", "x_annotated.png"]


def test_an_annotated_copy_of_a_long_name_is_cut_to_fit_a_file_name(tmp_path):
    """A photo named with 245 bytes is legal, its copy's 259 were not: the copy was never written."""
    from ferkit.cli.predict import _annotated_name

    taken = set()
    copies = [_annotated_name(tmp_path, tmp_path / f"{stem}.png", taken) for stem in ("a" * 245, "a" * 246, "é" * 125)]
    for copy in copies:
        copy.write_bytes(b"")  # the file system takes each
    assert [copy.name for copy in copies] == [
        "a" * 235 + "_annotated.png", "a" * 235 + "_annotated-2.png", "é" * 117 + "_annotated.png"]


def test_annotated_copies_never_overwrite_an_input(tiny_run, group_photo, tmp_path):
    """Copies written into the folder being read: x.jpg's copy must not replace x_annotated.png."""
    cv2.imwrite(str(tmp_path / "x.jpg"), group_photo[0])
    cv2.imwrite(str(tmp_path / "x_annotated.png"), group_photo[0])
    before = (tmp_path / "x_annotated.png").read_bytes()
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--save-annotated", str(tmp_path),
                 "--json"]) == 0
    assert (tmp_path / "x_annotated.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "x.jpg", "x_annotated-2.png", "x_annotated.png", "x_annotated_annotated.png"]


def test_predict_no_detect_classifies_whole_crops(tiny_run, tmp_path, capsys):
    """The crop as it is, no detector: its box the whole image, its scores the model's for it."""
    from ferkit.inference import EmotionRecognizer

    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.full((48, 48), 120, np.uint8))
    assert main(["predict", str(crop), "--no-detect", "--model", str(tiny_run)]) == 0
    _, box, label, confidence = capsys.readouterr().out.strip().split("\t")
    scores = EmotionRecognizer(tiny_run).classify([np.full((48, 48), 120, np.uint8)])[0]  # the whole crop's
    assert box == "0,0,48,48" and label == max(scores, key=scores.get)
    assert float(confidence) == pytest.approx(scores[label], abs=1e-3)


@pytest.mark.parametrize("flags", [["--detector", "haar"], ["--max-faces", "1"], ["--min-face", "20"], ["--tiny-faces"],
                                   ["--min-detection-score", "0.5"], ["--no-align"]])
def test_detector_flags_beside_no_detect_are_refused(tiny_run, tmp_path, capsys, flags):
    """They were accepted and ignored: --no-detect finds no face to filter."""
    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.full((48, 48), 120, np.uint8))
    assert main(["predict", str(crop), "--no-detect", "--model", str(tiny_run), *flags]) == 2
    assert re.search(rf"--no-detect classifies each image whole: {re.escape(flags[0])}[^,]* acts on the faces",
                     capsys.readouterr().err)  # one flag: "acts"


@pytest.mark.parametrize("threads, message", [("0", "1 to"), ("100000", "(4 x the cores ferkit may use), got 100000"),
                                              ("many", "(4 x the cores ferkit may use), got 'many'")])
def test_threads_beyond_reason_are_refused(threads, message, capsys):
    """100,000 ONNX Runtime threads took minutes to start, at full CPU."""
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "photo.jpg", "--threads", threads])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --threads: " in err and message in err


def test_ctrl_c_in_predict_keeps_the_results_so_far(tiny_run, group_photo, tmp_path, monkeypatch, capsys):
    from ferkit.inference import EmotionRecognizer

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        cv2.imwrite(str(folder / name), group_photo[0])
    detect = EmotionRecognizer.detect
    monkeypatch.setattr(EmotionRecognizer, "detect", _raising_on_call(2, KeyboardInterrupt, detect))
    out = tmp_path / "faces.csv"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(out)]) == 130
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and {row["file"] for row in rows} == {str(folder / "a.jpg")}
    assert "the results hold the first 1 of 3 images" in capsys.readouterr().err
    monkeypatch.setattr(EmotionRecognizer, "detect", _raising_on_call(2, KeyboardInterrupt, detect))
    assert main(["predict", str(folder), "--model", str(tiny_run), "--json"]) == 130
    printed = json.loads(capsys.readouterr().out)
    assert printed["interrupted"] and len(printed["results"]) == 1


def test_predict_takes_file_names_that_are_not_utf8(tiny_run, group_photo, tmp_path, capsys):
    """Bytes of another encoding in a name (a Latin-1 'café.jpg'): OpenCV's imwrite crashed the
    process on its annotated copy, and the CSV ended the run with a UnicodeEncodeError."""
    import os

    folder = tmp_path / "photos"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.jpg")
    try:
        cv2.imwrite(str(tmp_path / "g.jpg"), group_photo[0])
        os.rename(tmp_path / "g.jpg", folder / name)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes only UTF-8 names")
    table, copies = tmp_path / "faces.csv", tmp_path / "ann"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(table),
                 "--save-annotated", str(copies)]) == 0
    assert capsys.readouterr().out.count("caf\\udce9.jpg") == 3  # printed escaped
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 3 and rows[0]["file"].endswith("caf\\udce9.jpg")
    assert [p.name for p in copies.iterdir()] == [os.fsdecode(b"caf\xe9_annotated.png")]


def test_predict_says_what_it_leaves_out_and_follows_linked_folders(tiny_run, group_photo, tmp_path, caplog):
    folder, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), group_photo[0])
    cv2.imwrite(str(elsewhere / "b.png"), group_photo[0])
    (folder / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "scan").write_bytes(b"\xff\xd8 no suffix")
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # read once, not forever
    table = tmp_path / "faces.csv"
    assert main(["predict", str(folder), "--model", str(tiny_run), "--csv", str(table)]) == 0
    files = {row["file"].split("/")[-1] for row in csv.DictReader(table.read_text(encoding="utf-8").splitlines())}
    assert files == {"a.jpg", "b.png"}
    assert "left out 2 files not named as images (.heic, no suffix)" in caplog.text


def test_predict_rerun_into_its_own_input_folder_reads_no_earlier_copies(tiny_run, group_photo, tmp_path,
                                                                          capsys):
    """`--save-annotated photos/annotated` twice: the second run's inputs are the photos alone, and
    each result names its copy (img.bmp and img.webp cannot both be img_annotated.png)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for suffix in (".bmp", ".webp"):
        cv2.imwrite(str(folder / f"img{suffix}"), group_photo[0])
    args = ["predict", str(folder), "--model", str(tiny_run), "--save-annotated", str(folder / "annotated"),
            "--json"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["file"].split("/")[-1] for r in results] == ["img.bmp", "img.webp"]
    assert [r["annotated"].split("/")[-1] for r in results] == ["img_annotated.png", "img_annotated-2.png"]
    assert sorted(p.name for p in (folder / "annotated").iterdir()) == ["img_annotated-2.png", "img_annotated.png"]


def test_an_existing_output_file_that_cannot_be_written_is_refused_first(tiny_run, group_photo, tmp_path,
                                                                         monkeypatch, capsys):
    """A read-only (or, for root, immutable) faces.csv: said before the first image, not after all."""
    from pathlib import Path

    photo, table = tmp_path / "g.jpg", tmp_path / "faces.csv"
    cv2.imwrite(str(photo), group_photo[0])
    table.write_text("earlier results\n", encoding="utf-8")
    open_ = Path.open

    def read_only(path, mode="r", *args, **kwargs):
        if path == table and mode != "r":
            raise PermissionError(1, "Operation not permitted", str(path))
        return open_(path, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    assert main(["predict", str(photo), "--model", str(tiny_run), "--csv", str(table)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"cannot write {table}: Operation not permitted" in err
    assert table.read_text(encoding="utf-8") == "earlier results\n"


def test_predict_reads_urls_beside_files(tiny_run, group_photo, web_folder, tmp_path_factory, capsys):
    base, folder = web_folder
    cv2.imwrite(str(folder / "group.jpg"), group_photo[0])
    out = tmp_path_factory.mktemp("out")
    url = f"{base}/group.jpg"
    assert main(["predict", url, f"{base}/gone.jpg", "--model", str(tiny_run), "--csv", str(out / "f.csv"),
                 "--save-annotated", str(out / "ann")]) == 1  # one of the two could not be read
    printed = capsys.readouterr()
    assert printed.out.count(url) == 3 and "HTTP 404" in printed.err
    with open(out / "f.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [url] * 3 + [f"{base}/gone.jpg"]  # the address as given
    assert (out / "ann" / "group_annotated.png").is_file()



def test_an_annotated_copy_of_a_url_is_named_by_its_file_name(tmp_path):
    from ferkit.cli.predict import _annotated_name

    taken = set()
    names = [_annotated_name(tmp_path, url, taken).name for url in (
        "http://h/photos/a%20b.jpg?size=2", "http://h/photos/a%20b.jpg", "http://h/x%00y.jpg", "http://h/")]
    assert names == ["a b_annotated.png", "a b_annotated-2.png", "xy_annotated.png", "download_annotated.png"]


def test_an_output_folder_above_the_input_leaves_no_input_out(tmp_path, group_photo, caplog):
    """`--save-annotated .` for `photos/`: the output folder holds the inputs, it is not inside them."""
    from ferkit.inference.inputs import find_images, marked_as_copy

    photos = tmp_path / "photos"
    (photos / "annotated").mkdir(parents=True)
    cv2.imwrite(str(photos / "a.png"), group_photo[0])
    (photos / "annotated" / "a_annotated.png").write_bytes(marked_as_copy(cv2.imencode(".png", group_photo[0])[1].tobytes()))
    assert [p.name for p in find_images([photos], leave_out=tmp_path)] == ["a.png", "a_annotated.png"]
    assert [p.name for p in find_images([photos], leave_out=photos / "annotated")] == ["a.png"]
    assert "left out the 1 image in" in caplog.text


def test_a_wildcard_no_shell_expanded_is_expanded(tmp_path, group_photo):
    """Windows' shells pass `photos/*.png` as it is (so do quotes anywhere): it was one image not
    found. A file whose own name has brackets is itself; a pattern matching nothing is kept, to be
    said not found."""
    from ferkit.inference.inputs import find_images

    for name in ("a.png", "b.png", "x[1].png"):
        cv2.imwrite(str(tmp_path / name), group_photo[0])
    (tmp_path / "c.txt").write_text("")
    found = find_images([str(tmp_path / "*.png"), str(tmp_path / "x[1].png"), str(tmp_path / "*.gif")])
    assert [Path(p).name for p in found] == ["a.png", "b.png", "x[1].png", "*.gif"]  # x[1].png once: both name it
    (tmp_path / "[2023] trip").mkdir()  # brackets in a folder's name, as Windows users write them
    cv2.imwrite(str(tmp_path / "[2023] trip" / "c.png"), group_photo[0])
    assert [Path(p).name for p in find_images([str(tmp_path / "[2023] trip" / "*.png")])] == ["c.png"]


def test_an_output_folder_inside_the_input_keeps_the_users_own_photos(tiny_run, tmp_path, group_photo, capsys):
    """`ferkit predict .. --save-annotated .` from trip/day1 had left day1's own photos out, as
    if they were this command's copies, with exit 0 and no row in the CSV."""
    from ferkit.cli import main

    for name in ("day1/beach.jpg", "day2/hike.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), group_photo[0])
    for _ in range(2):  # the second time, the first run's copies in day1 are left out, the photos not
        capsys.readouterr()
        assert main(["predict", str(tmp_path), "--save-annotated", str(tmp_path / "day1"), "--model",
                     str(tiny_run), "--json"]) == 0
        read = [Path(r["file"]).relative_to(tmp_path).as_posix() for r in json.loads(capsys.readouterr().out)["results"]]
        assert read == ["day1/beach.jpg", "day2/hike.jpg"]
    assert sorted(p.name for p in (tmp_path / "day1").iterdir()) == ["beach.jpg", "beach_annotated.png", "hike_annotated.png"]


def test_an_annotated_copy_never_replaces_a_file_ferkit_did_not_write(tiny_run, tmp_path, group_photo):
    """The user's own out/x_annotated.png was overwritten; one of ferkit's earlier copies still is.
    A.JPG and a.png get two copies, not one on macOS' and Windows' case-blind file systems."""
    from ferkit.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    for name in ("in/x.jpg", "in/A.JPG", "in/a.png", "out/x_annotated.png"):
        cv2.imwrite(str(tmp_path / name), group_photo[0])
    mine = (tmp_path / "out" / "x_annotated.png").read_bytes()
    for _ in range(2):
        assert main(["predict", str(tmp_path / "in"), "--save-annotated", str(tmp_path / "out"), "--model",
                     str(tiny_run), "--json"]) == 0
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            "A_annotated.png", "a_annotated-2.png", "x_annotated-2.png", "x_annotated.png"]
    assert (tmp_path / "out" / "x_annotated.png").read_bytes() == mine


def test_an_output_folder_given_as_an_input_too_is_not_read_back(tmp_path, group_photo, capsys):
    """`predict same --save-annotated same`, or a shell's `photos/*` listing the output folder: the
    copies were read back as inputs, and the output doubled on every run. A user's own image with a
    copy's name is an input still, and kept."""
    from ferkit.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), group_photo[0])
    cv2.imwrite(str(photos / "b_annotated.png"), group_photo[0])  # the user's, not ferkit's
    before = (photos / "b_annotated.png").read_bytes()
    for args in ([str(photos)], [str(photos / "a.png"), str(photos / "out")]):
        out = str(photos if len(args) == 1 else photos / "out")
        for _ in range(2):
            capsys.readouterr()
            assert main(["predict", *args, "--save-annotated", out, "--json"]) == 0
            read = [Path(r["file"]).name for r in json.loads(capsys.readouterr().out)["results"]]
            assert read == (["a.png", "b_annotated.png"] if len(args) == 1 else ["a.png"])
    assert (photos / "b_annotated.png").read_bytes() == before
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "a_annotated.png", "b_annotated.png",
                                                         "b_annotated_annotated.png", "out"]
    assert sorted(p.name for p in (photos / "out").iterdir()) == ["a_annotated.png"]
    assert cv2.imread(str(photos / "out" / "a_annotated.png")).shape == group_photo[0].shape  # still a PNG
    # A shell's photos/* lists the copies as files: left out all the same
    capsys.readouterr()
    listed = sorted(str(p) for p in photos.iterdir() if p.is_file())
    assert main(["predict", *listed, "--save-annotated", str(photos), "--json"]) == 0
    read = [Path(r["file"]).name for r in json.loads(capsys.readouterr().out)["results"]]
    assert read == ["a.png", "b_annotated.png"]


def test_a_pipe_named_as_an_image_in_a_folder_is_not_waited_on(tmp_path, group_photo):
    """A FIFO named x.jpg in a searched folder hung the run, waiting for a writer."""
    import os

    from ferkit.inference.inputs import find_images

    cv2.imwrite(str(tmp_path / "a.png"), group_photo[0])
    os.mkfifo(tmp_path / "x.jpg")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # a broken link: its own clear error
    assert [p.name for p in find_images([tmp_path])] == ["a.png", "gone.jpg"]


def test_a_link_to_itself_is_one_unreadable_image_not_the_end_of_the_run(tiny_run, group_photo, tmp_path, capsys):
    """Path.resolve() raises RuntimeError on a link loop (Python 3.11, 3.12): a traceback, and none
    of the folder's images analysed."""
    cv2.imwrite(str(tmp_path / "a.png"), group_photo[0])
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    out_csv = tmp_path / "out" / "faces.csv"
    assert main(["predict", str(tmp_path), "--model", str(tiny_run), "--csv", str(out_csv),
                 "--save-annotated", str(tmp_path / "out")]) == 1
    rows = list(csv.DictReader(out_csv.open()))
    assert {Path(r["file"]).name for r in rows} == {"a.png", "loop.jpg"}
    assert sum(r["error"] == "" for r in rows) == group_photo[1]
    assert main(["predict", str(tmp_path / "loop.jpg"), str(tmp_path / "a.png"), "--model", str(tiny_run)]) == 1
    assert "a.png" in capsys.readouterr().out


def test_an_annotated_copy_never_takes_the_csvs_name(tiny_run, group_photo, tmp_path):
    """The CSV, written last, had replaced the copy of the same name, and named itself as the copy."""
    cv2.imwrite(str(tmp_path / "photo.jpg"), group_photo[0])
    out = tmp_path / "ann"
    assert main(["predict", str(tmp_path / "photo.jpg"), "--model", str(tiny_run), "--save-annotated", str(out),
                 "--csv", str(out / "photo_annotated.png")]) == 0
    rows = list(csv.DictReader((out / "photo_annotated.png").open()))
    assert {Path(r["annotated"]).name for r in rows} == {"photo_annotated-2.png"}
    assert cv2.imread(str(out / "photo_annotated-2.png")).shape == group_photo[0].shape


def _disk_full(path):
    """open() standing in for a full disk at `path` (what /dev/full does on Linux, as root)."""
    import builtins
    import errno
    import os

    def opened(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
        return builtins.open(file, *args, **kwargs)

    return opened


def test_a_csv_that_cannot_be_written_costs_no_json(tiny_run, group_photo, tmp_path, capsys, monkeypatch):
    """The CSV is written first; a full disk there had ended the run before the JSON was printed,
    with an error naming no file; and a reader that left (`| head`) hid the error altogether."""
    import os
    import sys

    from ferkit.cli import predict

    cv2.imwrite(str(tmp_path / "a.png"), group_photo[0])
    table = tmp_path / "faces.csv"
    monkeypatch.setattr(predict, "open", _disk_full(table), raising=False)
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(tiny_run), "--json", "--csv", str(table)]) == 2
    out, err = capsys.readouterr()
    assert len(json.loads(out)["results"][0]["faces"]) == group_photo[1]
    assert f"cannot write {table}: {os.strerror(28)}" in err
    read, write = os.pipe()
    os.close(read)  # the reader is gone
    with os.fdopen(write, "w", buffering=1) as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["predict", str(tmp_path / "a.png"), "--model", str(tiny_run), "--csv", str(table)]) == 141
    assert f"cannot write {table}: {os.strerror(28)}" in capsys.readouterr().err


def test_hidden_images_in_a_folder_are_left_out_and_said(tmp_path, caplog):
    from ferkit.inference.inputs import find_images

    for name in ("a.png", ".b.png", ".trash/c.jpg", "._a.png", "__MACOSX/d.png", ".DS_Store"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level("WARNING", logger="ferkit"):
        assert [p.name for p in find_images([tmp_path])] == ["a.png"]
    said = [r.getMessage() for r in caplog.records if "hidden" in r.getMessage()]
    assert len(said) == 1 and "left out 2 hidden images" in said[0] and "e.g. .b.png" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="ferkit"):  # given by name, one is read
        assert find_images([tmp_path / ".b.png"]) == [tmp_path / ".b.png"] and not caplog.records


def _raising_on_call(n: int, error, method):
    """`method`, raising `error` on its nth call: one image's failure among several."""
    calls = []

    def wrapper(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise error
        return method(self, *args, **kwargs)
    return wrapper


def _three_photos(folder: Path, image) -> Path:
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), image)
    return folder


def test_an_image_that_fails_to_analyse_is_its_own_error_and_the_rest_are_kept(tiny_run, group_photo, tmp_path,
                                                                              monkeypatch, capsys):
    """OpenCV's error on one image (a panorama beyond its limits, say) was a traceback that lost the
    CSV and JSON of every image."""
    import cv2 as cv

    from ferkit.inference.recognizer import EmotionRecognizer

    photos = _three_photos(tmp_path / "photos", group_photo[0])
    shrt_max = cv.error("OpenCV(4.14.0) imgwarp.cpp:1: error: (-215:Assertion failed) src.cols < SHRT_MAX")
    monkeypatch.setattr(EmotionRecognizer, "detect", _raising_on_call(2, shrt_max, EmotionRecognizer.detect))
    # the annotated copy's own failure is that image's too
    monkeypatch.setattr(EmotionRecognizer, "annotate", _raising_on_call(2, MemoryError, EmotionRecognizer.annotate))
    table = tmp_path / "faces.csv"
    assert main(["predict", str(photos), "--model", str(tiny_run), "--csv", str(table), "--json",
                 "--save-annotated", str(tmp_path / "copies")]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert [bool(r["faces"]) for r in results] == [True, False, False]
    assert "MemoryError" in results[2]["error"]
    assert "cannot analyse" in results[1]["error"] and "SHRT_MAX" in results[1]["error"]
    rows = list(csv.DictReader(table.open()))
    assert {Path(r["file"]).name for r in rows} == {"a.png", "b.png", "c.png"}


def test_a_reader_that_leaves_early_still_gets_the_csv_written(tiny_run, group_photo, tmp_path, monkeypatch,
                                                                capsys):
    """`ferkit predict photos --csv f.csv | head -1`: the closed pipe ended the run before the CSV."""
    import os
    import sys

    photos = _three_photos(tmp_path / "photos", group_photo[0])
    read, write = os.pipe()
    os.close(read)  # the reader is gone: every write is a broken pipe
    closed = os.fdopen(write, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", closed)
    table = tmp_path / "faces.csv"
    try:
        assert main(["predict", str(photos), "--model", str(tiny_run), "--csv", str(table)]) == 141
    finally:
        closed.close()
    done = len({r["file"] for r in csv.DictReader(table.open())})
    assert 1 <= done and f"the output was closed: the results hold the first {done} of 3 images" in \
        capsys.readouterr().err


def test_a_terminated_predict_keeps_its_results_so_far(tiny_run, group_photo, tmp_path):
    """`timeout` and `docker stop` send SIGTERM, which ended the run with nothing written."""
    import signal
    import subprocess
    import sys

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        cv2.imwrite(str(photos / f"{i:02}.png"), group_photo[0])
    table = tmp_path / "faces.csv"
    child = subprocess.Popen([sys.executable, "-m", "ferkit", "predict", str(photos), "--model", str(tiny_run),
                              "--jsonl", "--csv", str(table)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    child.stdout.readline()  # the first image is done
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    # the results kept, then ended by the signal after all, as `timeout` and systemd expect
    assert child.returncode == -signal.SIGTERM and "interrupted: the results hold the first" in err, err
    assert 1 <= len({row["file"] for row in csv.DictReader(table.open())}) < 40


def test_a_folder_that_cannot_be_listed_is_said(tmp_path, monkeypatch, caplog):
    import os

    from ferkit.data.files import walk_files

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "y.jpg").write_bytes(b"x")
    (tmp_path / "x.jpg").write_bytes(b"x")
    scandir = os.scandir

    def refusing(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    assert [p.name for p in walk_files(tmp_path)] == ["x.jpg"]
    assert "cannot list" in caplog.text and "locked (Permission denied): its files are left out" in caplog.text


def test_predict_reads_a_data_url_and_names_it_briefly(tiny_run, group_photo, tmp_path, capsys):
    """The Python API and the server take data URLs; on the command line one was a file not found
    (a Path, which also folds base64's // into one)."""
    import base64

    encoded = base64.b64encode(cv2.imencode(".png", group_photo[0])[1].tobytes()).decode()
    url = "data:image/png;base64," + encoded
    table = tmp_path / "f.csv"
    assert main(["predict", url, url, "--model", str(tiny_run), "--csv", str(table),
                 "--save-annotated", str(tmp_path / "ann")]) == 0
    name = f"data:image/png;base64,... ({len(url):,} characters)"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * group_photo[1] and all(line.startswith(name + "\t") for line in lines)
    with open(table, encoding="utf-8", newline="") as handle:
        assert {row["file"] for row in csv.DictReader(handle)} == {name}
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["data-url_annotated-2.png", "data-url_annotated.png"]


def test_small_images_with_no_face_found_point_to_no_detect(tmp_path, capsys):
    """FER2013's 48x48 crops are too tight for the detector, which finds no face in many: --no-detect
    is what such a folder needs, and nothing had said it."""
    for name, side in (("a.png", 48), ("b.png", 96), ("big.png", 200)):
        cv2.imwrite(str(tmp_path / name), np.full((side, side), 128, np.uint8))
    assert main(["predict", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"no face found in 2 images of at most 96 px (e.g. {tmp_path / 'a.png'})" in err
    assert "--no-detect classifies each image whole" in err
    assert main(["predict", str(tmp_path / "big.png")]) == 0 and "--no-detect" not in capsys.readouterr().err


def test_a_file_named_by_several_paths_is_read_once(tmp_path, caplog):
    """`predict photos photos/a.png` (or a link to it) had analysed a.png twice and written two copies."""
    from ferkit.inference.inputs import find_images

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8), 100, np.uint8))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.png").symlink_to(tmp_path / "a.png")
    found = find_images([tmp_path / "a.png", str(tmp_path / "*.png"), tmp_path / "elsewhere", tmp_path / "b.png"])
    assert found == [tmp_path / "a.png", tmp_path / "b.png"]
    assert f"3 of the paths given name a file already among them (e.g. {tmp_path / 'a.png'})" in caplog.text


def test_predict_json_names_the_bundled_model_as_the_server_does(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "face.png"), np.full((48, 48), 128, np.uint8))
    assert main(["predict", str(tmp_path / "face.png"), "--no-detect", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "default"  # not the file's path in site-packages
