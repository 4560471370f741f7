from __future__ import annotations

import pytest

from ferkit.inference.faces import Face
from ferkit.inference.tracking import FaceTracks, iou


def _frame(tracks: FaceTracks, *boxes, dt: float = 1 / 30) -> list[int]:
    """One frame analysed `dt` seconds after the one before (30 frames/s unless said)."""
    tracks.clock = getattr(tracks, "clock", 0.0) + dt
    faces = [Face(box) for box in boxes]
    tracks.assign(faces, tracks.clock)
    return [face.track for face in faces]


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 0, 10, 10)) == 0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_faces_keep_their_numbers_when_the_order_in_the_frame_changes():
    """A face coming in on the left shifts everyone's place in the frame, not their numbers."""
    tracks = FaceTracks()
    assert _frame(tracks, (100, 50, 80, 80), (400, 60, 80, 80)) == [1, 2]
    assert _frame(tracks, (108, 52, 80, 80), (396, 60, 80, 80)) == [1, 2]
    assert _frame(tracks, (0, 40, 70, 70), (115, 54, 80, 80), (390, 61, 80, 80)) == [3, 1, 2]


def test_a_face_missed_for_a_few_frames_keeps_its_number_and_one_gone_long_gets_a_new_one():
    tracks = FaceTracks(patience=0.1)
    assert _frame(tracks, (100, 50, 80, 80), (400, 60, 80, 80)) == [1, 2]
    for _ in range(2):  # face 2 turned away: the detector misses it
        assert _frame(tracks, (100, 50, 80, 80)) == [1]
    assert _frame(tracks, (100, 50, 80, 80), (402, 60, 80, 80)) == [1, 2]
    for _ in range(4):  # 0.13 s
        assert _frame(tracks, (100, 50, 80, 80)) == [1]
    assert _frame(tracks, (100, 50, 80, 80), (402, 60, 80, 80)) == [1, 3]


@pytest.mark.parametrize("fps, every", [(30, 1), (60, 1), (30, 5), (25, 30)])
def test_how_long_a_missing_face_keeps_its_number_is_time_not_frames(fps, every):
    """Half a second behind someone keeps the number at any frame rate and `every`; five seconds
    away (someone else sitting down in the same place) does not, even with frames analysed seconds apart."""
    dt = every / fps
    for gone, kept in ((0.5, True), (5.0, False)):
        tracks = FaceTracks()
        assert _frame(tracks, (100, 50, 80, 80), (400, 60, 80, 80), dt=dt) == [1, 2]
        for _ in range(max(round(gone / dt) - 1, 0)):
            _frame(tracks, (100, 50, 80, 80), dt=dt)
        assert _frame(tracks, (100, 50, 80, 80), (402, 60, 80, 80), dt=dt) == [1, 2 if kept else 3], (gone, dt)


def test_two_faces_never_share_a_number():
    """Two detections over one face of the last frame: the better overlap keeps the number."""
    for order in (1, -1):  # whichever comes first in the frame
        tracks = FaceTracks()
        assert _frame(tracks, (100, 100, 100, 100)) == [1]
        assert _frame(tracks, *[(90, 100, 100, 100), (150, 100, 100, 100)][::order]) == [1, 2][::order]


def test_faces_that_cross_keep_their_numbers():
    """Each is matched to where it should be by now, moving as it did, not to the nearest box."""
    tracks, seen = FaceTracks(), []
    for i in range(20):
        a, b = (20 + 25 * i, 60, 70, 80), (500 - 25 * i, 60, 70, 80)
        in_front = i in (9, 10)  # where they overlap, the detector sees the face in front alone
        seen.append(_frame(tracks, a) if in_front else _frame(tracks, *sorted([a, b])))
    assert seen == [[1, 2]] * 9 + [[1]] * 2 + [[2, 1]] * 9  # they swap places, not numbers


def test_a_face_that_moved_further_than_its_size_between_frames_analysed_is_still_itself():
    tracks, dt = FaceTracks(), 1 / 3  # `every` 10 at 30 frames/s
    assert _frame(tracks, (0, 50, 80, 80), (500, 50, 80, 80), dt=dt) == [1, 2]
    assert _frame(tracks, (100, 50, 80, 80), (500, 50, 80, 80), dt=dt) == [1, 2]  # no overlap: 1.25 widths away
    assert _frame(tracks, (200, 50, 80, 80), (500, 50, 80, 80), dt=dt) == [1, 2]  # and where it should be
    assert _frame(tracks, (300, 250, 80, 80), dt=dt) == [3]  # 2.5 widths from where 1 should be: someone else


def test_a_newcomer_beside_a_face_missed_for_one_frame_does_not_take_its_number():
    """A face 1.25 widths away 1/30 s later is someone else (37 widths a second): it had taken the
    number of a face the detector missed for that one frame, which came back under a new one, and the
    two people's timelines were one."""
    tracks = FaceTracks()
    for _ in range(10):
        assert _frame(tracks, (100, 50, 80, 80), (400, 50, 80, 80)) == [1, 2]
    assert _frame(tracks, (200, 50, 80, 80), (400, 50, 80, 80)) == [3, 2]  # 1 missed, a newcomer beside it
    assert _frame(tracks, (100, 50, 80, 80), (200, 50, 80, 80), (400, 50, 80, 80)) == [1, 3, 2]


def test_smoothing_settles_a_flickering_label_and_keeps_faces_apart():
    from ferkit.inference.tracking import ScoreSmoother

    smoother, labels = ScoreSmoother(5), []
    for i in range(8):  # one face between two close emotions; another face, happy throughout
        flicker = {"happy": 0.45, "sad": 0.55} if i % 2 else {"happy": 0.6, "sad": 0.4}  # happy on average
        faces = [Face((0, 0, 10, 10), scores=flicker, track=1),
                 Face((50, 0, 10, 10), scores={"happy": 1.0, "sad": 0.0}, track=2)]
        smoother.smooth(faces, kept={1, 2})
        labels.append(faces[0].label)
        assert faces[1].scores == {"happy": 1.0, "sad": 0.0}  # not mixed with the other face
        assert sum(faces[0].scores.values()) == pytest.approx(1)
    assert labels == ["happy"] * 8  # unsmoothed it would alternate
    unsmoothed = Face((0, 0, 10, 10), scores={"happy": 0.3, "sad": 0.7}, track=2)
    ScoreSmoother(1).smooth([unsmoothed], kept={2})
    assert unsmoothed.scores == {"happy": 0.3, "sad": 0.7}


def test_a_face_missed_for_a_frame_keeps_its_average_and_a_number_given_up_does_not():
    """One missed frame in seven restarted the average, and the flicker --smooth removes came back.
    A number the tracker gives up may come to someone else: nothing is carried past it."""
    from ferkit.inference.tracking import ScoreSmoother

    smoother = ScoreSmoother(5)
    smoother.smooth([Face((0, 0, 10, 10), scores={"happy": 1.0, "sad": 0.0}, track=1)], kept={1})
    smoother.smooth([], kept={1})  # face 1 not found in this frame, its number kept
    back = Face((0, 0, 10, 10), scores={"happy": 0.0, "sad": 1.0}, track=1)
    smoother.smooth([back], kept={1})
    assert back.scores == pytest.approx({"happy": 2 / 3, "sad": 1 / 3})
    smoother.smooth([], kept=set())  # given up
    again = Face((0, 0, 10, 10), scores={"happy": 0.0, "sad": 1.0}, track=1)
    smoother.smooth([again], kept={1})
    assert again.scores == {"happy": 0.0, "sad": 1.0}


def test_a_face_of_another_size_nearby_is_not_the_one_missed():
    """A 200 px face missed for a frame, a 40 px face 1.25 of its widths away: the small one took
    its number, and the big one a new number when it came back. Frames 0.1 s apart (`every` 3), so
    that the small face is within reach by distance (0.81 widths of 1.0): only its size tells it apart."""
    tracks = FaceTracks()
    for _ in range(5):
        assert _frame(tracks, (100, 100, 200, 200), dt=0.1) == [1]
    assert _frame(tracks, (330, 120, 40, 40), dt=0.1) == [2]
    assert _frame(tracks, (100, 100, 200, 200), (330, 120, 40, 40), dt=0.1) == [1, 2]


@pytest.mark.parametrize("frames", [0, -2, 2.5, True])
def test_smoothing_over_no_whole_number_of_frames_is_refused(frames):
    from ferkit.errors import FerkitError
    from ferkit.inference.tracking import ScoreSmoother

    with pytest.raises(FerkitError, match=r"smooth \(--smooth\) is a whole number of frames"):
        ScoreSmoother(frames)


def test_faces_crossing_with_jittery_boxes_keep_their_numbers():
    """A detector's boxes jitter by a few pixels, and a face hidden behind another is followed by its
    velocity alone: from the last two boxes, two faces often swapped numbers for good."""
    import random

    wrong = total = 0
    for seed in range(60):
        jitter, tracks, numbers = random.Random(seed), FaceTracks(), {0: [], 1: []}
        for i in range(82):  # two 80-px faces, 5 px a frame towards each other at 30 frames/s
            boxes = [(k, tuple(v + jitter.randint(-6, 6) for v in (x, 100, 80, 80)))
                     for k, x in ((0, 20 + 5 * i), (1, 620 - 5 * i))]
            if iou(boxes[0][1], boxes[1][1]) > 0.3:  # the one behind is not detected
                boxes = boxes[:1]
            boxes.sort(key=lambda kb: kb[1])
            for (k, _), number in zip(boxes, _frame(tracks, *(box for _, box in boxes))):
                numbers[k].append(number)
        wrong += sum(number != seq[0] for seq in numbers.values() for number in seq)
        total += sum(map(len, numbers.values()))
    assert wrong / total < 0.03  # 1.0% here; 5.4% from the last two boxes
