from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferkit.choices import DETECTORS
from ferkit.data.preprocess import crop_face
from ferkit.errors import FerkitError
from ferkit.inference.faces import create_detector
from ferkit.inference.tracking import iou as _iou


def test_yunet_finds_every_face_of_a_group(group_photo):
    image, count = group_photo
    faces = create_detector("yunet").detect(image)
    assert len(faces) == count
    assert all(f.landmarks.shape == (5, 2) and 0 < f.detection_score <= 1 for f in faces)


def test_a_faces_dict_is_json_and_keeps_a_videos_track():
    """dataclasses.asdict meets the landmarks' array; to_dict() had dropped a video face's track."""
    import json

    from ferkit.inference.faces import Face

    face = Face((1, 2, 30, 40), 0.9, np.zeros((5, 2), np.float32), {"happy": 0.8, "sad": 0.2})
    assert "track" not in json.loads(json.dumps(face.to_dict()))  # a photo's face: no track
    face.track = 3
    assert json.loads(json.dumps(face.to_dict()))["track"] == 3


def test_a_face_comes_back_from_its_dict_and_keeps_whole_pixels():
    """An app drawing a server's answer needs a Face from its JSON; a box of floats or numpy's ints
    had reached OpenCV's drawing (a raw overload error) and json.dumps (a TypeError)."""
    import json

    from ferkit.inference.faces import Face

    face = Face((1, 2, 30, 40), 0.9, np.arange(10, dtype=np.float32).reshape(5, 2), {"happy": 0.8, "sad": 0.2}, 4)
    back = Face.from_dict(json.loads(json.dumps(face.to_dict())))
    assert back == face and np.array_equal(back.landmarks, face.landmarks) and back.label == "happy"
    assert Face.from_dict({"box": [5, 6, 7, 8]}) == Face((5, 6, 7, 8))  # a box alone: no scores, no label
    rounded = Face((10.4, np.int64(10), 50.5, np.float32(49.6)))
    assert rounded.box == (10, 10, 50, 50) and all(type(v) is int for v in rounded.box)
    json.dumps(rounded.to_dict())
    for bad in [(1, 2, 3), ("a", 1, 2, 3), None]:
        with pytest.raises(FerkitError, match="a face box is four numbers"):
            Face(bad)


def test_a_faces_dict_names_its_landmarks_and_haar_says_it_has_none(astronaut):
    face = create_detector("yunet").detect(astronaut)[0]
    points = face.to_dict()["landmarks"]
    assert list(points) == ["right_eye", "left_eye", "nose", "mouth_right", "mouth_left"]
    x, y, w, h = face.box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in points.values())
    assert points["right_eye"][0] < points["left_eye"][0]  # the person's own right, on the image's left
    haar = create_detector("haar").detect(astronaut)[0].to_dict()
    assert haar["landmarks"] is None and haar["detection_score"] is None
    big = create_detector("yunet").detect(cv2.resize(astronaut, None, fx=4, fy=4))[0]  # found at 640 px
    for (x0, y0), (x1, y1) in zip(face.landmarks, big.landmarks):  # mapped back to the big image's pixels
        assert abs(x1 - 4 * x0) < 0.1 * big.box[2] and abs(y1 - 4 * y0) < 0.1 * big.box[3]


def test_yunet_faces_compare_find_and_remove_like_haar_ones(astronaut):
    """Their landmarks array made `==`, `in` and `list.remove` raise (an array's truth value)."""
    detector = create_detector("yunet")
    faces, again = detector.detect(astronaut), detector.detect(astronaut)
    assert faces == again and faces[0] in again
    again.remove(faces[0])
    assert again == []


def test_haar_finds_the_large_faces(group_photo):
    faces = create_detector("haar").detect(group_photo[0])
    assert len(faces) >= 2


@pytest.mark.parametrize("name", DETECTORS)  # every choice the CLI offers
@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_faces_in_blank_or_noise(name, kind):
    image = np.full((480, 640, 3), 128, np.uint8) if kind == "blank" else \
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert create_detector(name).detect(image) == []


def test_big_photo_boxes_are_in_original_pixels(astronaut):
    small = create_detector("yunet").detect(astronaut)
    big_image = cv2.resize(astronaut, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2048 px
    big = create_detector("yunet").detect(big_image)
    assert len(small) == len(big) == 1
    scaled = tuple(v * 4 for v in small[0].box)
    assert _iou(big[0].box, scaled) > 0.8


def test_second_pass_finds_tiny_faces_in_big_photos(astronaut):
    big = np.full((1588, 2280, 3), 100, np.uint8)
    big[100:700, 100:600] = cv2.resize(astronaut[0:300, 100:350], (500, 600))
    big[200:252, 1900:1940] = cv2.resize(astronaut[40:230, 150:300], (40, 52), interpolation=cv2.INTER_AREA)
    assert len(create_detector("yunet").detect(big)) == 1  # the 40 px face is ~11 px at 640
    faces = create_detector("yunet", second_pass=True).detect(big)
    assert len(faces) == 2
    assert any(1890 <= f.box[0] <= 1945 for f in faces)


def test_second_pass_keeps_the_whole_face_where_a_tile_edge_cuts_it(astronaut):
    """Tiles overlap: the first one that sees this face cuts it (its edge is at 640 of 1920 px) and
    found a box 29 px wide, which used to win over the next tile's whole face (36 px)."""
    big = np.full((1588, 2280, 3), 100, np.uint8)
    big[600:678, 722:782] = cv2.resize(astronaut[40:230, 150:300], (60, 78), interpolation=cv2.INTER_AREA)
    faces = create_detector("yunet", second_pass=True).detect(big)
    assert len(faces) == 1 and faces[0].box[2] >= 34 and faces[0].box[0] + faces[0].box[2] >= 765


def test_face_at_the_border_stays_inside(astronaut):
    cut = astronaut[60:400, 220:512]  # the face is cut by the left edge
    faces = create_detector("yunet").detect(cut)
    assert len(faces) == 1
    for face in faces:
        x, y, w, h = face.box
        assert x == 0 and y >= 0 and x + w <= cut.shape[1] and y + h <= cut.shape[0]


@pytest.mark.parametrize("convert", [
    lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY),
    lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)[..., None],
    lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA),
])
@pytest.mark.parametrize("name", DETECTORS)  # every choice the CLI offers
def test_gray_and_rgba_inputs(astronaut, convert, name):
    assert len(create_detector(name).detect(convert(astronaut))) == 1


@pytest.mark.parametrize("convert", [
    lambda im: im.astype(np.uint16) * 257,  # a 16-bit PNG as OpenCV reads it
    lambda im: im.astype(np.float32) / 255,  # skimage's floats
])
@pytest.mark.parametrize("name", DETECTORS)
def test_16_bit_and_float_arrays_find_what_8_bit_finds(astronaut, convert, name):
    detector = create_detector(name)
    assert [f.box for f in detector.detect(convert(astronaut))] == [f.box for f in detector.detect(astronaut)]


@pytest.mark.parametrize("name", DETECTORS)  # every choice the CLI offers
def test_tiny_images_do_not_crash(name):
    assert create_detector(name).detect(np.zeros((5, 7, 3), np.uint8)) == []


@pytest.mark.parametrize("shape", [(1, 2000, 3), (3000, 2, 3)])
@pytest.mark.parametrize("name, options", [("yunet", {}), ("yunet", {"second_pass": True}), ("haar", {})])
def test_strips_too_thin_to_downscale_do_not_crash(name, options, shape):
    """Downscaled to 640 px on the long side, the short side used to round to 0 px (cv2.error)."""
    assert create_detector(name, **options).detect(np.zeros(shape, np.uint8)) == []


def test_unknown_detector():
    with pytest.raises(FerkitError, match="unknown detector"):
        create_detector("mtcnn")


def test_haar_missing_gives_a_clear_error(monkeypatch):
    monkeypatch.delattr(cv2, "CascadeClassifier")
    with pytest.raises(FerkitError, match="opencv-python-headless<5"):
        create_detector("haar")


def test_crop_is_square_with_margin_and_padded_at_edges():
    image = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    assert crop_face(image, (40, 40, 20, 10), 0.1).shape == (24, 24)
    edge = crop_face(np.full((100, 100), 7, np.uint8), (0, 0, 30, 30), 0.5)
    assert edge.shape == (60, 60)
    assert (edge == 7).all()  # the part outside the image repeats the border, not black


def test_a_face_in_an_image_wider_than_opencvs_warp_takes_is_cropped():
    """OpenCV's warp refuses images of 32,767 px or more a side (a panorama): only the face's
    neighbourhood is warped, and the crop is what the same neighbourhood alone gives."""
    rng = np.random.default_rng(0)
    wide = np.zeros((200, 33000), np.uint8)
    wide[:, 31900:32200] = rng.integers(0, 256, (200, 300))
    alone = wide[:, 31900:32200].copy()
    for angle in (0.0, 20.0):
        np.testing.assert_array_equal(crop_face(wide, (32000, 40, 100, 100), 0.1, angle),
                                      crop_face(alone, (100, 40, 100, 100), 0.1, angle))


@pytest.mark.parametrize("tilt", [-25, -10, 15, 30])
def test_alignment_levels_known_eye_positions(tilt):
    """eye_angle + crop_face turn a face whose eyes are tilted by a known angle back to level."""
    from ferkit.data.preprocess import eye_angle

    image = np.zeros((200, 200), np.uint8)
    centre, half = np.array([100.0, 100.0]), 30
    rad = np.radians(tilt)
    offset = half * np.array([np.cos(rad), np.sin(rad)])
    eyes = np.array([centre - offset, centre + offset])  # right eye (image left), left eye
    for x, y in eyes:
        cv2.circle(image, (int(round(x)), int(round(y))), 5, 255, -1)
    landmarks = np.vstack([eyes, np.zeros((3, 2))])
    assert eye_angle(landmarks) == pytest.approx(tilt, abs=0.5)
    crop = crop_face(image, (60, 60, 80, 80), 0.2, eye_angle(landmarks))
    _, _, _, centroids = cv2.connectedComponentsWithStats((crop > 127).astype(np.uint8))
    (x0, y0), (x1, y1) = sorted(centroids[1:].tolist())
    assert np.degrees(np.arctan2(y1 - y0, x1 - x0)) == pytest.approx(0, abs=2)


@pytest.mark.parametrize("name", DETECTORS)
def test_one_detector_shared_by_threads_finds_what_it_finds_alone(name, group_photo, tmp_path):
    """Threads detecting at once on images of different sizes (the network is resized for each):
    in a process of its own, because unguarded this was a segfault, not a failure."""
    import subprocess
    import sys

    for i, scale in enumerate((1.0, 0.6, 1.5)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.resize(group_photo[0], None, fx=scale, fy=scale))
    code = f"""
import cv2, sys
from concurrent.futures import ThreadPoolExecutor
from ferkit.inference.faces import create_detector
from ferkit.inference.tracking import iou as _iou
detector = create_detector({name!r})
images = [cv2.imread({str(tmp_path)!r} + f"/{{i}}.png") for i in range(3)]
alone = [[f.box for f in detector.detect(image)] for image in images]
work = [i % 3 for i in range(60)]
with ThreadPoolExecutor(3) as pool:
    shared = list(pool.map(lambda i: [f.box for f in detector.detect(images[i])], work))
sys.exit(sum(boxes != alone[i] for i, boxes in zip(work, shared)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-500:]}"
