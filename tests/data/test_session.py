"""Reading a session folder written by hand in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorium_data import DataFormatError, Session, find_sessions
from tests.conftest import write_hand_session


def test_reads_hand_written_layout(hand_session: Path) -> None:
    session = Session(hand_session)
    assert session.name == hand_session.name
    assert (session.n_trials, session.n_neurons) == (5, 7)
    assert session.frame_shape == (36, 64)
    assert session.config["data_keys"][0] == "videos"
    assert list(session.trial_indices("oracle")) == [1, 2]
    assert [t.index for t in session.trials(["train", "final_test_bonus"])] == [0, 4]
    assert [session.trial(i).length for i in range(5)] == [20, 20, 13, 20, 9]
    short = session.trial(2)
    assert isinstance(short.video, np.memmap)
    assert short.video_frames().shape == (13, 36, 64)
    assert short.behavior_frames().shape == (13, 2)
    assert short.pupil_center_frames().shape == (13, 2)
    assert short.response_frames().shape == (13, 7)
    assert not np.isnan(short.response_frames()).any()
    np.testing.assert_array_equal(short.video_frames()[3], short.video[:, :, 3])
    assert session.cell_motor_coordinates.shape == (7, 3)
    stats = session.statistics("responses")
    assert stats.mean.shape == (7,)
    assert stats.median is not None
    session.validate()


def test_clip_identity_falls_back_to_video_hash(hand_session: Path) -> None:
    session = Session(hand_session)
    assert session.trial_meta("clip_ids") is None
    ids = [session.trial(i).clip_id for i in range(5)]
    # trials 1 and 2 show the same clip, but trial 2 is shorter: its content differs.
    assert ids[1].startswith("sha1:")
    assert len(set(ids)) == 5
    twin = write_hand_session(hand_session.parent / "twin", lengths=(20, 20, 20, 20, 9))
    again = Session(twin)
    assert again.trial(1).clip_id == again.trial(2).clip_id
    assert again.trial(1).stimulus_type is None


def test_object_dtype_tiers_are_accepted(tmp_path: Path) -> None:
    path = write_hand_session(tmp_path, tiers_dtype="object")
    assert list(Session(path).tiers[:2]) == ["train", "oracle"]


def test_all_nan_responses_mean_none_and_a_missing_file_is_an_error(hand_session: Path) -> None:
    (hand_session / "data/responses/3.npy").unlink()
    nan = np.full((7, 20), np.nan, dtype=np.float32)
    np.save(hand_session / "data/responses/4.npy", nan)
    session = Session(hand_session)
    with pytest.raises(DataFormatError, match=r"responses/3.npy: missing; trial 3"):
        _ = session.trial(3).has_responses
    assert not session.trial(4).has_responses
    assert session.trial(0).has_responses


def test_opening_reads_only_metadata(tmp_path: Path) -> None:
    """A full-scale listing touches tiers and unit ids only, never trial files."""
    path = tmp_path / "dynamic1-1-1-Video-x"
    (path / "meta/trials").mkdir(parents=True)
    (path / "meta/neurons").mkdir(parents=True)
    np.save(path / "meta/trials/tiers.npy", np.array(["train"] * 700))
    np.save(path / "meta/neurons/unit_ids.npy", np.arange(8000))
    session = Session(path)
    assert (session.n_trials, session.n_neurons) == (700, 8000)
    assert len(session.trial_indices("train")) == 700
    with pytest.raises(DataFormatError, match=r"data/videos/5\.npy: file is missing"):
        _ = session.trial(5).video


def test_find_sessions(tmp_path: Path) -> None:
    write_hand_session(tmp_path, name="dynamic1-1-1-Video-a")
    write_hand_session(tmp_path, name="dynamic2-1-1-Video-b")
    names = [s.name for s in find_sessions(tmp_path)]
    assert names == ["dynamic1-1-1-Video-a", "dynamic2-1-1-Video-b"]
    assert len(find_sessions(tmp_path / "dynamic1-1-1-Video-a")) == 1
    with pytest.raises(DataFormatError, match="no session folders"):
        find_sessions(tmp_path / "dynamic1-1-1-Video-a" / "data")


def test_unknown_tier_name(hand_session: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiers"):
        Session(hand_session).trial_indices("test")
    with pytest.raises(IndexError, match="out of range"):
        Session(hand_session).trial(5)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an npy file at all")


def _reshape(path: Path) -> None:
    np.save(path, np.zeros((3, 20), dtype=np.float32))


BROKEN = [
    # (file, how it is broken, how the session is touched, expected message)
    ("meta/trials/tiers.npy", Path.unlink, "open", "file is missing; expected one tier"),
    ("meta/trials/tiers.npy", _garbage, "open", "unreadable"),
    ("meta/neurons/unit_ids.npy", _reshape, "open", r"shape \(3, 20\), expected \(N,\) ids"),
    ("data/videos/1.npy", Path.unlink, "video", "file is missing; expected a video, H x W x T"),
    ("data/videos/1.npy", _truncate, "video", "unreadable"),
    ("data/videos/1.npy", _reshape, "video", r"expected a video of 36 x 64 x T frames"),
    ("data/behavior/1.npy", _reshape, "behavior", r"shape \(3, 20\), expected behaviour, 2 x T"),
    ("data/behavior/1.npy", _truncate, "behavior", "unreadable"),
    ("data/pupil_center/1.npy", _garbage, "pupil", "unreadable"),
    ("data/responses/1.npy", _reshape, "responses", "responses of 7 neurons, N x T"),
    ("meta/statistics/videos/all/std.npy", Path.unlink, "stats", "the std of videos"),
    ("meta/neurons/cell_motor_coordinates.npy", _reshape, "coords", "7 x 3"),
    ("meta/trials/clip_ids.npy", _reshape, "clip", r"one clip_ids entry per trial \(5,\)"),
]


def _touch(session_path: Path, how: str) -> None:
    session = Session(session_path)
    trial = session.trial(1)
    actions = {
        "open": lambda: None,
        "video": lambda: trial.length,
        "behavior": lambda: trial.behavior,
        "pupil": lambda: trial.pupil_center,
        "responses": lambda: trial.responses,
        "stats": lambda: session.statistics("videos"),
        "coords": lambda: session.cell_motor_coordinates,
        "clip": lambda: trial.clip_id,
    }
    actions[how]()


@pytest.mark.parametrize(("relative", "breaker", "how", "message"), BROKEN)
def test_broken_file_is_named(
    hand_session: Path, relative: str, breaker: object, how: str, message: str
) -> None:
    path = hand_session / relative
    if relative.endswith("clip_ids.npy"):
        np.save(path, np.array(["a"] * 5))
    breaker(path)  # type: ignore[operator]
    with pytest.raises(DataFormatError, match=message) as info:
        _touch(hand_session, how)
    assert str(path) in str(info.value)
    with pytest.raises(DataFormatError, match=message):
        Session(hand_session).validate() if how != "clip" else _touch(hand_session, how)


def test_unknown_tier_in_file(hand_session: Path) -> None:
    tiers = np.array(["train", "test", "x", "train", "none"])
    np.save(hand_session / "meta/trials/tiers.npy", tiers)
    with pytest.raises(DataFormatError, match=r"tiers.npy: unknown tiers \['test', 'x'\]"):
        Session(hand_session)


def test_bad_config_json(hand_session: Path) -> None:
    (hand_session / "config.json").write_text("{not json")
    with pytest.raises(DataFormatError, match=r"config\.json: not valid JSON"):
        _ = Session(hand_session).config
    (hand_session / "config.json").unlink()
    assert Session(hand_session).config == {}


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a directory"):
        Session(tmp_path / "nope")
