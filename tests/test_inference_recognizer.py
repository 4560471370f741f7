from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import zipfile

import cv2
import numpy as np
import pytest

from conftest import jpeg_of_many_scans, png_header_only, softmax_reads_float, synthetic_faces, without_train_extra
from ferkit.errors import FerkitError
from ferkit.inference import EmotionRecognizer, Face
from ferkit.inference.backends import KerasBackend, OnnxBackend, load_backend


def test_onnx_matches_keras(tiny_run):
    keras_backend, onnx_backend = KerasBackend(tiny_run), load_backend(tiny_run)
    assert isinstance(onnx_backend, OnnxBackend)
    assert onnx_backend.info.classes == keras_backend.info.classes == ("angry", "happy", "sad", "surprise")
    batch = np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype(np.float32)
    a, b = keras_backend.predict(batch), onnx_backend.predict(batch)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.995


def test_detect_classify_annotate(tiny_run, group_photo):
    rec = EmotionRecognizer(tiny_run)
    image, count = group_photo
    faces = rec.detect(image)
    assert len(faces) == count and all(isinstance(f, Face) for f in faces)
    face = faces[0]
    assert isinstance(face.box, tuple) and len(face.box) == 4
    assert face.label in rec.classes and set(face.scores) == set(rec.classes)
    assert sum(face.scores.values()) == pytest.approx(1, abs=1e-4)
    drawn = rec.annotate(image, faces)
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)
    assert np.array_equal(image, group_photo[0])  # the caller's image is untouched
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    for single_channel in (gray, gray[..., None]):  # both are gray images: drawn on in colour
        assert rec.annotate(single_channel, faces).shape == image.shape
    # as the server answers: dicts drawn as their faces; an RGB image comes back RGB, not swapped
    assert np.array_equal(rec.annotate(image, [face.to_dict() for face in faces]), drawn)
    rgb = rec.annotate(image[..., ::-1], faces, rgb=True)
    assert np.array_equal(rgb, drawn[..., ::-1])
    from PIL import Image

    assert np.array_equal(rec.annotate(Image.fromarray(np.ascontiguousarray(image[..., ::-1])), faces), rgb)
    with pytest.raises(FerkitError, match="one image, not a list of 1: call it for each"):
        rec.detect(["photo.jpg"])


def test_max_faces_keeps_the_largest_left_to_right(tiny_run, group_photo):
    image, _ = group_photo
    every = EmotionRecognizer(tiny_run).detect(image)
    assert [face.box[0] for face in every] == sorted(face.box[0] for face in every)
    kept = EmotionRecognizer(tiny_run, max_faces=2).detect(image)
    assert [face.box for face in kept] == [every[0].box, every[2].box]  # the 80-px face in between left out
    assert len(EmotionRecognizer(tiny_run, max_faces=5).detect(image)) == 3


@pytest.mark.parametrize("max_faces", [0, -1, 1.5, True, "2"])
def test_max_faces_that_mean_nothing_are_refused(tiny_run, max_faces):
    with pytest.raises(FerkitError, match="max_faces is a whole number"):
        EmotionRecognizer(tiny_run, max_faces=max_faces)
    assert EmotionRecognizer(tiny_run, max_faces=np.int64(2)).max_faces == 2  # numpy's integers are whole too


@pytest.mark.parametrize("detector", [None, 3, object()])
def test_a_detector_that_is_neither_a_name_nor_one_is_refused_at_once(tiny_run, detector):
    """None had been taken, and failed at the first detect with an AttributeError."""
    with pytest.raises(FerkitError, match="detector is a name .* or an object with a detect\\(image\\) method"):
        EmotionRecognizer(tiny_run, detector=detector)


@pytest.mark.parametrize("margin", [-0.2, float("nan"), float("inf"), "0.1", None])
def test_margins_that_mean_nothing_are_refused(tiny_run, margin):
    """A negative margin cropped each face to a pixel or two, every face given one label, no error."""
    with pytest.raises(FerkitError, match="margin is the share of a face's box added on each side"):
        EmotionRecognizer(tiny_run, margin=margin)
    assert EmotionRecognizer(tiny_run, margin=0).margin == 0


def test_an_option_the_detector_does_not_take_is_named(tiny_run):
    with pytest.raises(FerkitError, match="the haar detector has no option score_threshold; it takes scale_factor"):
        EmotionRecognizer(tiny_run, "haar", score_threshold=0.5)


@pytest.mark.parametrize("detector, option, value, message", [
    ("yunet", "score_threshold", 2, "score_threshold is a number above 0, at most 1, got 2"),  # had found no face
    ("yunet", "score_threshold", -1, "score_threshold is a number above 0"),  # had raised cv2.error in detect
    ("yunet", "nms_threshold", "0.3", "nms_threshold is a number"),
    ("yunet", "min_size", -1, "min_size is a whole number, at least 0, got -1"),
    ("yunet", "max_side", 12.5, "max_side is a whole number"),
    ("haar", "scale_factor", 1.0, "scale_factor is a number above 1, got 1.0"),
    ("haar", "min_neighbors", -1, "min_neighbors is a whole number, at least 0"),
])
def test_detector_options_out_of_range_are_refused_in_python_too(tiny_run, detector, option, value, message):
    with pytest.raises(FerkitError, match=re.escape(message)):
        EmotionRecognizer(tiny_run, detector, **{option: value})


def test_options_for_what_ferkit_loads_are_refused_with_what_it_was_given_loaded(tiny_run):
    """threads and detector options only shape what ferkit itself loads: with a loaded backend or
    detector they would be ignored, so they are refused rather than silently dropped."""
    from ferkit.inference.faces import create_detector

    shared = load_backend(tiny_run)
    with pytest.raises(FerkitError, match="a loaded backend keeps the threads"):
        EmotionRecognizer(shared, threads=1)
    with pytest.raises(FerkitError, match=r"detector options \(min_size, score_threshold\) are for a detector"):
        EmotionRecognizer(shared, create_detector("yunet"), score_threshold=0.5, min_size=10)
    assert EmotionRecognizer(shared, create_detector("haar")).backend is shared  # without them, both are used


def test_threads_are_a_whole_number_and_a_keras_model_says_it_does_not_use_them(tiny_run, caplog):
    from ferkit.hardware import most_threads

    for bad in (2.5, 0, True, "2", most_threads() + 1):  # as many as the CLI allows: 100,000 took minutes
        with pytest.raises(FerkitError, match=f"threads is a whole number, at least 1 and at most {most_threads()}"):
            load_backend(tiny_run, threads=bad)
    assert load_backend(tiny_run / "model.onnx", threads=np.int64(2)).info.classes  # numpy's ints too
    assert load_backend(tiny_run / "model.onnx", threads=most_threads()).info.classes  # the most is allowed
    caplog.set_level("WARNING", logger="ferkit")
    load_backend(tiny_run / "model.keras", threads=2)
    assert "threads=2 is for ONNX models" in caplog.text


def test_boxes_from_another_detector_are_cropped_and_scored_as_ferkits_own(tiny_run, group_photo):
    image, _ = group_photo
    rec = EmotionRecognizer(tiny_run, align=False)  # given boxes come without landmarks to level
    own = rec.detect(image)
    given = rec.detect(image, boxes=[face.box for face in reversed(own)])
    assert [face.box for face in given] == [face.box for face in reversed(own)]  # in the order given
    for mine, theirs in zip(reversed(own), given):
        assert theirs.scores == pytest.approx(mine.scores, abs=1e-6)
    assert given[0].detection_score is None and given[0].to_dict()["detection_score"] is None
    assert rec.detect(image, boxes=[(-10.4, -10, 50, 50.2)])[0].box == (0, 0, 40, 40)  # clipped to the image
    assert rec.detect(image, boxes=[]) == []


@pytest.mark.parametrize("box, message", [
    ((1, 2, 3), "four numbers"), (("a", 0, 1, 1), "four numbers"), (5, "four numbers"),
    ((700, 0, 10, 10), "no pixels inside the 640x480 image"), ((0, 0, 0, 10), "no pixels"),
    ((float("nan"), 0, 5, 5), "no pixels"),
])
def test_a_box_that_is_no_face_is_refused(tiny_run, group_photo, box, message):
    with pytest.raises(FerkitError, match=message):
        EmotionRecognizer(tiny_run).detect(group_photo[0], boxes=[box])


def test_inputs_path_rgb_array_and_pil(tiny_run, astronaut, tmp_path):
    from PIL import Image

    rec = EmotionRecognizer(tiny_run)
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut)
    rgb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)
    results = [rec.detect(path), rec.detect(str(path)), rec.detect(rgb, rgb=True), rec.detect(Image.fromarray(rgb))]
    assert [len(r) for r in results] == [1, 1, 1, 1]
    for other in results[1:]:
        assert other[0].box == results[0][0].box
        assert other[0].scores == pytest.approx(results[0][0].scores, abs=1e-5)


def test_16_bit_and_exif_rotated_inputs_match_the_file_read_by_path(tiny_run, astronaut, tmp_path):
    """What OpenCV does for a path (16-bit scaled to 8, EXIF orientation applied) holds for arrays and
    PIL images too: convert("RGB") alone clips 16-bit pixels to white and ignores EXIF."""
    from PIL import Image

    rec = EmotionRecognizer(tiny_run)
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    deep = gray.astype(np.uint16) * 257
    for sixteen_bit, eight_bit in ((deep, gray), (Image.fromarray(deep), gray),
                                   (astronaut.astype(np.uint16) * 257, astronaut)):
        found, expected = rec.detect(sixteen_bit), rec.detect(eight_bit)
        assert len(found) == len(expected) == 1 and found[0].box == expected[0].box

    sideways = tmp_path / "phone.jpg"  # stored rotated, with the EXIF tag that turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    Image.fromarray(cv2.rotate(astronaut[:, :, ::-1], cv2.ROTATE_90_COUNTERCLOCKWISE)).save(sideways, exif=exif)
    by_path, by_pil = rec.detect(sideways), rec.detect(Image.open(sideways))
    assert len(by_path) == len(by_pil) == 1 and by_pil[0].box == by_path[0].box


def test_a_12_bit_png_reads_like_its_8_bit_image(tiny_run, astronaut, tmp_path):
    """OpenCV's IMREAD_COLOR shifts 16-bit pixels right by 8: 12-bit data (0..4095) came out at
    0..15, black, and no face was found."""
    from ferkit.inference.images import read_image_file

    path = tmp_path / "camera.png"
    assert cv2.imwrite(str(path), ((astronaut.astype(np.int64) * 4095 + 127) // 255).astype(np.uint16))
    read = read_image_file(path)
    assert read.dtype == np.uint8 and np.abs(read.astype(int) - astronaut).max() <= 1
    rec = EmotionRecognizer(tiny_run)
    found, expected = rec.detect(path), rec.detect(astronaut)
    assert len(found) == len(expected) == 1 and found[0].box == expected[0].box


def test_a_radiance_hdr_image_reads_as_opencv_makes_it_8_bit(tmp_path):
    """Light, not 0..1: one highlight over 2 must not make the whole image read as 0..255, black."""
    from ferkit.inference.images import read_image_file

    pixels = np.full((20, 30, 3), 0.5, np.float32)
    pixels[0, 0] = 5.0
    path = tmp_path / "light.hdr"
    assert cv2.imwrite(str(path), pixels)
    np.testing.assert_array_equal(read_image_file(path), cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert read_image_file(path)[5, 5].tolist() == [128, 128, 128]


@pytest.mark.parametrize("channels", [1, 3])
def test_a_float_tiff_reads_like_its_8_bit_image(tmp_path, channels):
    """OpenCV's IMREAD_COLOR refuses 32-bit samples; the same file as a PIL image was read."""
    from ferkit.data.preprocess import to_uint8
    from ferkit.inference.images import read_image_file

    pixels = np.random.default_rng(0).random((30, 40, channels)).astype(np.float32)
    path = tmp_path / "float.tiff"
    assert cv2.imwrite(str(path), pixels)
    expected = to_uint8(pixels)
    expected = cv2.cvtColor(expected, cv2.COLOR_GRAY2BGR) if channels == 1 else expected
    np.testing.assert_array_equal(read_image_file(path), expected)


def test_classify_is_one_batch(tiny_run):
    rec = EmotionRecognizer(tiny_run)
    calls = []
    original = rec.backend.predict
    rec.backend.predict = lambda batch: calls.append(len(batch)) or original(batch)
    crops = [np.full((48, 48), v, np.uint8) for v in range(20)] + [np.zeros((90, 70, 3), np.uint8)]
    scores = rec.classify(crops)
    assert calls == [21] and len(scores) == 21
    assert rec.classify([]) == []


def test_classify_takes_what_detect_takes_and_refuses_one_image_alone(tiny_run, astronaut, tmp_path):
    from PIL import Image

    rec = EmotionRecognizer(tiny_run)
    crop = astronaut[30:230, 150:330]  # BGR
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), crop)
    by_array = rec.classify([crop])[0]
    rgb = crop[:, :, ::-1].copy()
    for other in (rec.classify([path])[0], rec.classify([path.read_bytes()])[0],
                  rec.classify([Image.fromarray(rgb)])[0], rec.classify([rgb], rgb=True)[0]):
        assert other == pytest.approx(by_array, abs=1e-6)
    for alone in (crop, crop[:, :, 0], crop[:, :, :1]):  # read row by row, it would be 200 "crops"
        with pytest.raises(FerkitError, match="pass \\[crop\\]"):
            rec.classify(alone)
    for one in (str(path), io.BytesIO(path.read_bytes())):  # a stream would be read line by line
        with pytest.raises(FerkitError, match="pass \\[crop\\]"):
            rec.classify(one)
    with pytest.raises(FerkitError, match="not an image array"):
        rec.classify([np.zeros((0, 0), np.uint8)])
    assert len(rec.classify(np.zeros((5, 48, 48), np.uint8))) == 5  # a batch of gray crops


def test_a_label_stays_on_the_image_when_the_box_fills_it(tiny_run):
    """Above the box when there is room, below it when the top edge is in the way, else inside."""
    from ferkit.inference.recognizer import COLOURS

    rec = EmotionRecognizer(tiny_run)
    scores = {"angry": 0.1, "happy": 0.7, "sad": 0.1, "surprise": 0.1}
    image = np.full((120, 120, 3), 128, np.uint8)
    for box in ((10, 0, 100, 120), (10, 40, 100, 40), (10, 0, 100, 60)):
        canvas = rec.annotate(image, [Face(box, scores=scores)])
        filled = np.all(canvas == COLOURS["happy"], axis=2).sum()
        outline = 2 * (box[2] + box[3]) + 4  # the 1-px box alone
        assert filled > outline + 500, box  # and a label's filled background


def test_a_label_at_the_right_edge_moves_left_to_stay_whole(tiny_run):
    """A label wider than the space right of its box is drawn whole, ending at the image's edge."""
    from ferkit.inference.recognizer import COLOURS

    rec = EmotionRecognizer(tiny_run)
    image = np.full((200, 320, 3), 128, np.uint8)
    face = Face((280, 100, 40, 40), scores={"happy": 0.9, "sad": 0.1}, track=12)
    canvas = rec.annotate(image, [face])
    label = np.all(canvas[:100] == COLOURS["happy"], axis=2)  # the label's background, above the box
    columns = np.flatnonzero(label.any(axis=0))
    assert columns[-1] == 319 and columns[0] < 240  # "#12 happy 90%" is about three face widths wide


def test_no_face_gives_empty_list(tiny_run):
    assert EmotionRecognizer(tiny_run).detect(np.full((240, 320, 3), 200, np.uint8)) == []


def test_data_urls_open_files_and_byte_streams_are_images(tiny_run, astronaut, tmp_path):
    """What web apps and notebooks hold: a browser's data URL, an upload's file object, a BytesIO."""
    import base64

    rec = EmotionRecognizer(tiny_run)
    jpeg = cv2.imencode(".jpg", astronaut)[1].tobytes()
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg)
    with open(path, "rb") as handle:
        inputs = [f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}", handle, io.BytesIO(jpeg),
                  memoryview(jpeg)]
        results = [rec.detect(image) for image in inputs]
    expected = rec.detect(path)
    assert len(expected) == 1
    for faces in results:
        assert [face.box for face in faces] == [expected[0].box]
        assert faces[0].scores == pytest.approx(expected[0].scores, abs=1e-6)
    stream = io.BytesIO(jpeg)  # detected, then annotated: read twice
    assert rec.annotate(stream, rec.detect(stream)).shape == astronaut.shape
    wrapped = base64.encodebytes(jpeg).decode()  # lines of 76 characters, as the base64 tool writes
    assert [face.box for face in rec.detect(f"data:image/jpeg;base64,{wrapped}")] == [expected[0].box]


@pytest.mark.parametrize("bad, message", [
    ("/nonexistent/photo.jpg", "image not found"),
    (b"definitely not a jpeg", "cannot read"),
    (np.zeros((4, 4, 5), np.uint8), "not an image array"),
    (np.zeros((50, 50), complex), r"its values are complex128, not real numbers \(uint8, uint16, float\)"),
    (np.array([[None, 1]]), "its values are object, not real numbers"),
    (np.array([["a", "b"]]), "its values are <U1, not real numbers"),
    (np.zeros((2, 40, 40, 3), np.uint8), "a batch of images: detect takes one image"),
    (None, r"not an image: None \(cv2.imread returns None for a file it cannot read: pass the path itself\)"),
    (5, r"not an image array: shape \(\); an image is height x width"),  # a number is not said to be None
    (np.zeros((3, 40, 40), np.uint8), r"channels first\? give array.transpose\(1, 2, 0\)"),
    (b"", r"it is empty \(0 bytes\)"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a HEIC/HEIF photo, which ferkit cannot"),
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64), "a video, not an image: `ferkit video`"),
    ("data:image/jpeg;base64,@@@not base64", "the image is not valid base64"),
    ("data:image/jpeg,rawtext", "data:image/<type>;base64,"),
    ("data:image/png;base64,aGVsbG8=", "cannot read the data URL: not an image"),
    ("/9j/4AAQSkZJRg" + "A" * 4000, r"a path of 4,014 characters \(/9j/4AAQSkZJRgAAAAAAA"),
    ("/9j/4AAQSkZJRg" + "A" * 40_000, r"a path of 40,014 characters"),  # over PATH_MAX, as a photo's base64 is
    ("/" + "a" * 300 + ".jpg", "File name too long"),  # one name over the file system's 255 bytes
])
def test_bad_images(tiny_run, bad, message):
    with pytest.raises(FerkitError, match=message) as error:
        EmotionRecognizer(tiny_run).detect(bad)
    assert len(str(error.value)) < 300  # never the whole of a long input


def test_a_folder_a_pipe_and_gray_with_alpha(tiny_run, astronaut, tmp_path):
    """A folder was "image not found"; a pipe (`<(curl ...)`) too; gray+alpha arrays were refused."""
    import os
    import threading

    rec = EmotionRecognizer(tiny_run)
    with pytest.raises(FerkitError, match="is a folder, not an image"):
        rec.detect(tmp_path)
    png = cv2.imencode(".png", astronaut)[1].tobytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(png,))
    writer.start()
    try:
        through_pipe = rec.detect(fifo)
    finally:
        writer.join(timeout=30)
    assert [f.box for f in through_pipe] == [f.box for f in rec.detect(png)] and through_pipe
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    with_alpha = np.dstack([gray, np.full_like(gray, 255)])
    assert [f.box for f in rec.detect(with_alpha)] == [f.box for f in rec.detect(gray)]


def test_an_avif_photo_is_turned_upright_as_its_orientation_says(tiny_run, astronaut):
    """OpenCV ignores AVIF's orientation: a phone's photo was analysed sideways."""
    from PIL import Image, features

    if not features.check("avif"):
        pytest.skip("this Pillow writes no AVIF")
    rec = EmotionRecognizer(tiny_run)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    stored = Image.fromarray(cv2.rotate(astronaut[:, :, ::-1], cv2.ROTATE_90_COUNTERCLOCKWISE))
    buffer = io.BytesIO()
    stored.save(buffer, "AVIF", exif=exif.tobytes(), quality=90)
    data = buffer.getvalue()
    expected = rec.detect(astronaut)
    for variant in (data, data[:8] + b"mif1" + data[12:]):  # avif as a compatible brand only, after mif1
        upright = rec.detect(variant)
        assert len(upright) == len(expected) == 1
        assert all(abs(a - b) <= 4 for a, b in zip(upright[0].box, expected[0].box))


def test_a_photo_deep_in_folders_is_read_however_long_its_path(tiny_run, astronaut, tmp_path):
    """Over 1,024 characters, within Linux's 4,096: a path, not base64 text."""
    folder = tmp_path.joinpath(*["f" * 200] * 6)
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "photo.png"), astronaut)
    assert len(str(folder / "photo.png")) > 1200
    assert len(EmotionRecognizer(tiny_run).detect(folder / "photo.png")) == 1


def test_an_image_at_a_url_is_downloaded(tiny_run, astronaut, web_folder, monkeypatch):
    from ferkit.inference import images

    base, folder = web_folder
    cv2.imwrite(str(folder / "a b.jpg"), astronaut)
    rec = EmotionRecognizer(tiny_run)
    faces = rec.detect(f"{base}/a%20b.jpg")
    expected = rec.detect(folder / "a b.jpg")
    assert [face.box for face in faces] == [face.box for face in expected] and len(faces) == 1
    with pytest.raises(FerkitError, match=r"cannot download .*/missing.jpg: HTTP 404"):
        rec.detect(f"{base}/missing.jpg")
    monkeypatch.setattr(images, "MAX_DOWNLOAD_MB", 0.001)
    with pytest.raises(FerkitError, match="over 0.001 MB"):
        rec.detect(f"{base}/a%20b.jpg")
    with socket.socket() as closed:  # a port nothing listens on, held so that nothing else takes it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with pytest.raises(FerkitError, match=f"cannot download http://127.0.0.1:{port}/a.jpg: .*refused"):
            rec.detect(f"http://127.0.0.1:{port}/a.jpg")


def test_urls_as_people_write_them_and_what_servers_send_wrong(tiny_run, astronaut, web_folder):
    base, folder = web_folder
    (folder / "ünï").mkdir()
    cv2.imwrite(str(folder / "ünï" / "a b.jpg"), astronaut)
    (folder / "page.html").write_text("<html>a page, not a photo</html>", encoding="utf-8")
    rec = EmotionRecognizer(tiny_run)
    assert len(rec.detect(f"{base}/ünï/a b.jpg")) == 1  # sent %-encoded, as a browser would
    with pytest.raises(FerkitError, match=r"page.html: the server sent text/html, not an image$"):
        rec.detect(f"{base}/page.html")
    with pytest.raises(FerkitError, match=r"cannot download http://\[::1/x.png: .*IPv6") as error:
        rec.detect("http://[::1/x.png")
    assert "\n" not in str(error.value)
    with _one_reply(b"SSH-2.0-OpenSSH_9.6\r\n") as port:  # a server that speaks no HTTP
        with pytest.raises(FerkitError, match=f"cannot download http://127.0.0.1:{port}/x.png: "):
            rec.detect(f"http://127.0.0.1:{port}/x.png")


@contextlib.contextmanager
def _one_reply(reply: bytes):
    """A loopback server that answers one connection with `reply` and closes it; yields its port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer():
            connection, _ = server.accept()
            connection.recv(4096)
            connection.sendall(reply)
            connection.close()

        threading.Thread(target=answer, daemon=True).start()
        yield server.getsockname()[1]


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n" + bytes(3000), "over 0.001 MB"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n" + bytes(10),
     "the connection ended after 10 of 1,000 bytes"),
])
def test_a_download_past_the_limit_or_cut_short_is_said(tiny_run, monkeypatch, reply, message):
    """Without a Content-Length the limit holds while reading; a body shorter than its declared length
    is not taken for a damaged image."""
    from ferkit.inference import images

    monkeypatch.setattr(images, "MAX_DOWNLOAD_MB", 0.001)
    with _one_reply(reply) as port, pytest.raises(FerkitError, match=message):
        EmotionRecognizer(tiny_run).detect(f"http://127.0.0.1:{port}/x.jpg")


def test_an_async_upload_is_named_and_its_read_closed(tiny_run, recwarn):
    """Starlette's UploadFile reads asynchronously: its coroutine is closed, never left unawaited."""
    import gc

    class Upload:
        async def read(self):
            return b""

    with pytest.raises(FerkitError, match="reads asynchronously: pass `await upload.read\\(\\)`"):
        EmotionRecognizer(tiny_run).detect(Upload())
    gc.collect()
    assert not [w for w in recwarn if "was never awaited" in str(w.message)]


def test_a_file_opened_as_text_is_a_clear_error(tiny_run, tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with open(tmp_path / "a.txt", encoding="utf-8") as handle, pytest.raises(FerkitError, match="binary mode"):
        EmotionRecognizer(tiny_run).detect(handle)


def test_a_stream_read_to_its_end_says_so(astronaut):
    """A pipe cannot go back: read a second time it gives nothing, which is not 'a corrupt image'."""
    import os

    from ferkit.inference.images import load_image

    small = cv2.resize(astronaut, (64, 64))  # its PNG fits the pipe's buffer: no reader needed yet
    read_end, write_end = os.pipe()
    os.write(write_end, cv2.imencode(".png", small)[1].tobytes())
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        assert load_image(pipe).shape == small.shape
        with pytest.raises(FerkitError, match="read to its end already"):
            load_image(pipe)


def test_an_image_too_large_to_decode_is_a_clear_error(tiny_run):
    with pytest.raises(FerkitError, match="larger than OpenCV decodes"):
        EmotionRecognizer(tiny_run).detect(png_header_only(40_000, 40_000))


def test_an_image_under_the_pixel_limit_but_over_the_free_memory_is_said_so(monkeypatch):
    """A 900-megapixel PNG on an edge box with 5 GB had been "larger than OpenCV decodes"."""
    from ferkit.inference import images

    def out_of_memory(data):
        error = cv2.error("Failed to allocate 2700000000 bytes")
        error.code = cv2.Error.StsNoMem  # as OpenCV's own allocation failure carries it
        raise error

    monkeypatch.setattr(images, "decode_bgr", out_of_memory)
    with pytest.raises(FerkitError, match="cannot read big.png: not enough memory free to decode it"):
        images.decode_image(b"\x89PNG....", "big.png")


def test_a_jpeg_of_too_many_scans_is_refused_before_minutes_of_decoding(tmp_path):
    from ferkit.inference.images import MAX_JPEG_SCANS, load_image

    assert load_image(jpeg_of_many_scans(MAX_JPEG_SCANS - 20)).shape == (300, 300, 3)  # a progressive photo reads
    (tmp_path / "bomb.jpg").write_bytes(jpeg_of_many_scans(5000))  # 2,000 took 12 s at 3000x3000
    with pytest.raises(FerkitError, match=r"bomb.jpg: a JPEG of 50\d\d scans, over the 100 ferkit decodes"):
        load_image(tmp_path / "bomb.jpg")


def test_a_motion_photo_is_read_whatever_its_video_holds(tmp_path, astronaut):
    """Phones append the clip after the picture's end; its bytes hold FF DA now and then (126 in an
    8 MB clip), which had been counted as scans and the photo refused as made to take minutes."""
    from ferkit.inference.images import MAX_JPEG_SCANS, jpeg_scans, load_image

    photo = cv2.imencode(".jpg", astronaut)[1].tobytes()
    clip = b"".join(bytes([i % 251]) * 300 + b"\xff\xda" for i in range(2 * MAX_JPEG_SCANS))
    (tmp_path / "motion.jpg").write_bytes(photo + b"MotionPhoto_Data" + clip)
    assert load_image(tmp_path / "motion.jpg").shape == astronaut.shape
    assert jpeg_scans(photo + clip) == 1
    assert jpeg_scans(jpeg_of_many_scans(80)) == jpeg_of_many_scans(80).count(b"\xff\xda")  # a picture's own
    bomb = jpeg_of_many_scans(500)
    at = bomb.index(b"\xff\xda")
    assert jpeg_scans(bomb[:at] + b"\x00" + bomb[at:]) == 506  # a stray byte, which decoders skip, hides none


def test_a_pfm_float_image_is_read_in_its_range(tmp_path, astronaut):
    """OpenCV's IMREAD_COLOR cast its 0..1 floats to 0 and 1: a black image, no face found."""
    from ferkit.inference.images import load_image

    cv2.imwrite(str(tmp_path / "a.pfm"), astronaut.astype(np.float32) / 255)
    np.testing.assert_array_equal(load_image(tmp_path / "a.pfm"), astronaut)


def test_bad_models(tmp_path):
    import keras

    with pytest.raises(FerkitError, match="model not found"):
        EmotionRecognizer(tmp_path / "missing.onnx")
    network = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    with pytest.raises(FerkitError, match="give a path .* not a Sequential"):
        EmotionRecognizer(network)  # it has a predict(), but no class names: refused now, not at a face
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(FerkitError, match="cannot load ONNX model"):
        EmotionRecognizer(broken)
    for name in ("broken.keras", "truncated.keras"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 cut short" if name.startswith("t") else b"not a zip")
        with pytest.raises(FerkitError, match="cannot load Keras model"):
            EmotionRecognizer(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "noconf.keras", "w") as archive:  # a zip, but no Keras model in it
        archive.writestr("notes.txt", "hello")
    with pytest.raises(FerkitError, match=r"cannot load Keras model .*noconf.keras: not a .keras file, or damaged"):
        EmotionRecognizer(tmp_path / "noconf.keras")  # had been Keras' KeyError traceback

    class Scale(keras.layers.Layer):  # another project's layer, which this process cannot find by name
        def call(self, x):
            return x * 2

    inputs = keras.Input((48, 48, 1))
    foreign = keras.Model(inputs, keras.layers.Dense(7)(keras.layers.Flatten()(Scale()(inputs))))
    foreign.save(tmp_path / "foreign.keras")
    with pytest.raises(FerkitError, match=r"foreign.keras: it holds a layer or function this Keras cannot rebuild "
                                          r"\(another project's own code, or another Keras version\?\) "
                                          r"\(Could not locate class 'Scale'"):
        EmotionRecognizer(tmp_path / "foreign.keras")  # had been Keras' TypeError traceback
    lambdas = keras.Model(inputs, keras.layers.Dense(7)(keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: x)(inputs))))
    lambdas.save(tmp_path / "lambda.keras")
    with pytest.raises(FerkitError, match=r"lambda.keras: it holds a Python lambda \(a Lambda layer\)"):
        EmotionRecognizer(tmp_path / "lambda.keras")  # had been "not a .keras file, or damaged"
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(FerkitError, match="unsupported model file"):
        EmotionRecognizer(tmp_path / "weights.h5")
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(FerkitError, match="holds no model"):
        EmotionRecognizer(tmp_path / "not-a-run")


def test_an_upper_case_keras_suffix_is_named_not_called_damaged(tiny_run, tmp_path):
    import shutil

    shutil.copy(tiny_run / "model.keras", tmp_path / "MODEL.KERAS")
    with pytest.raises(FerkitError, match="rename .*MODEL.KERAS to MODEL.keras"):
        EmotionRecognizer(tmp_path / "MODEL.KERAS")


def test_model_paths_find_the_onnx_export(tiny_run, tmp_path):
    """Upper-case suffixes and a run directory holding only `ferkit export --quantize int8`'s file."""
    import shutil

    upper = tmp_path / "MODEL.ONNX"
    shutil.copy(tiny_run / "model.onnx", upper)
    assert EmotionRecognizer(upper).backend.name == str(upper)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "config.json", run)
    shutil.copy(tiny_run / "model.onnx", run / "model-int8.onnx")
    assert EmotionRecognizer(run).backend.name == str(run / "model-int8.onnx")


def test_inference_needs_no_tensorflow(tiny_run, group_photo, tmp_path):
    """`ferkit predict` with an ONNX model, in an interpreter where TensorFlow/Keras cannot load."""
    photo = tmp_path / "group.png"
    cv2.imwrite(str(photo), group_photo[0])
    result = without_train_extra(
        "from ferkit.cli import main\n"
        f"code = main(['predict', {str(photo)!r}, '--model', {str(tiny_run / 'model.onnx')!r}])\n"
        "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)\n"
        "sys.exit(code)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("group.png") == 3


def test_without_the_train_extra_the_python_api_names_it(tiny_run):
    result = without_train_extra(
        "import ferkit\n"
        "from ferkit import *\n"
        "assert 'EmotionRecognizer' in dir() and 'train' not in dir(), dir()\n"
        "for call in (lambda: ferkit.train, lambda: ferkit.EmotionRecognizer(" + repr(str(tiny_run / "model.keras")) + ")):\n"
        "    try:\n"
        "        call()\n"
        "    except ModuleNotFoundError as exc:\n"
        "        assert \"pip install 'ferkit[train]'\" in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError('no error')\n"
    )
    assert result.returncode == 0, result.stderr


def test_import_ferkit_is_light():
    import subprocess
    import sys

    code = ("import sys, ferkit; from ferkit import EmotionRecognizer\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'torch', 'jax', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_onnx_matches_keras_on_real_faces(tiny_run, real_members):
    faces = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE) for _, data in real_members]
    batch = np.stack(faces).astype(np.float32)[..., None]
    a, b = KerasBackend(tiny_run).predict(batch), load_backend(tiny_run).predict(batch)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.995


def test_int8_export_is_smaller_and_close(tiny_run, tmp_path):
    from ferkit.models.export import export_onnx

    path = export_onnx(tiny_run, tmp_path / "q.onnx", quantize="int8")
    assert path.stat().st_size < (tiny_run / "model.onnx").stat().st_size / 2
    quantized, plain = load_backend(path), load_backend(tiny_run / "model.onnx")
    assert quantized.info.classes == plain.info.classes and quantized.info.config["quantize"] == "int8"
    images, _ = synthetic_faces(plain.info.classes, 10, seed=5)
    batch = np.stack(images).astype(np.float32)[..., None]
    assert (quantized.predict(batch).argmax(1) == plain.predict(batch).argmax(1)).mean() >= 0.9
    # The scores are float: quantized too, they came in 8-bit steps summing to 0.985-1.008; and so
    # are the logits, whose 8-bit steps tied the top class exactly (119 of 5,000 rows of a small model)
    np.testing.assert_allclose(quantized.predict(batch).sum(1), 1, atol=1e-5)
    assert softmax_reads_float(path)



@pytest.mark.parametrize("flags, exact", [("fma avx2", True), ("avx2 avx512f avx512_vnni", False),
                                          ("avx2 avx_vnni", False)])
def test_int8_models_run_on_kernels_that_do_not_saturate(tiny_run, tmp_path, monkeypatch, flags, exact):
    """AVX2-only CPUs saturate in ONNX Runtime's default u8s8 kernels (the int8 test above then
    failed there, 0.85 of labels kept): the session asks for the u8u8 ones there, and only there."""
    from ferkit import hardware

    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
    options = load_backend(tiny_run / "model.onnx")._session.get_session_options()
    if exact:
        assert options.get_session_config_entry("session.x64quantprecision") == "1"
    else:
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry("session.x64quantprecision")


def test_unknown_quantization(tiny_run):
    from ferkit.models.export import export_onnx

    with pytest.raises(FerkitError, match="unknown quantization"):
        export_onnx(tiny_run, quantize="int4")


def test_any_path_like_is_a_path(tiny_run, group_photo, tmp_path):
    """Not only pathlib.Path: any object with __fspath__ (os.PathLike), as open() takes."""
    photo = tmp_path / "g.png"
    cv2.imwrite(str(photo), group_photo[0])

    class Named:
        def __fspath__(self):
            return str(photo)

    rec = EmotionRecognizer(tiny_run)
    assert [f.box for f in rec.detect(Named())] == [f.box for f in rec.detect(photo)] != []


@pytest.mark.parametrize("fmt, frames", [("GIF", 3), ("GIF", 1), ("WEBP", 2), ("PNG", 2)])
def test_an_animated_image_is_read_by_its_first_frame_and_said_so(tmp_path, caplog, fmt, frames):
    """OpenCV decodes an animated GIF's first frame alone; the rest had gone unread without a word."""
    import io

    from PIL import Image

    from ferkit.inference.images import load_image

    pictures = [Image.new("L", (32, 32), 40 * (i + 1)) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format=fmt, save_all=True, append_images=pictures[1:])
    image = load_image(buffer.getvalue())
    assert image.shape[:2] == (32, 32) and int(image.mean()) in range(35, 46)  # the first frame's
    said = f"image bytes: an animated image of {frames} frames; only the first is read"
    assert (said in caplog.text) == (frames > 1)
    assert ("(ferkit video reads them all)" in caplog.text) == (frames > 1 and fmt != "WEBP")  # no WebP video


def test_an_animated_png_is_found_behind_a_large_colour_profile():
    """Its acTL chunk had been looked for in the first 4 kB only."""
    import zlib

    from ferkit.inference.images import _apng

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    start = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes(13)) + chunk(b"iCCP", bytes(8000))
    assert _apng(start + chunk(b"acTL", bytes(8)) + chunk(b"IDAT", b"x"))
    assert not _apng(start + chunk(b"IDAT", b"x") + chunk(b"acTL", bytes(8)))  # after the image data: none


def test_the_lazy_names_are_listed_for_completion():
    """dir(ferkit) had not listed EmotionRecognizer or Face: no completion in an editor or IPython."""
    import ferkit

    assert {"EmotionRecognizer", "Face", "FerkitError", "EMOTIONS", "compare"} <= set(dir(ferkit))
    assert not {"os", "sys", "platform", "find_spec", "annotations"} & set(dir(ferkit))  # its own imports
    from ferkit.training.compare import compare

    assert ferkit.compare is compare  # the README's ferkit.compare; it had been an AttributeError
