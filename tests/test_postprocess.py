import numpy as np
import pytest

from birdclef.postprocess import postprocess, power_low_ranked, scale_by_file_max, smooth
from birdclef.settings import PostprocessConfig

WEIGHTS, EDGE = (0.2, 0.6, 0.2), (0.9, 0.1)


def test_smoothing_by_hand_on_a_three_window_file():
    p = np.array([[0.0, 0.2], [1.0, 0.4], [0.5, 0.6]])
    expected = [
        [0.9 * 0.0 + 0.1 * 1.0, 0.9 * 0.2 + 0.1 * 0.4],
        [0.2 * 0.0 + 0.6 * 1.0 + 0.2 * 0.5, 0.2 * 0.2 + 0.6 * 0.4 + 0.2 * 0.6],
        [0.9 * 0.5 + 0.1 * 1.0, 0.9 * 0.6 + 0.1 * 0.4],
    ]
    np.testing.assert_allclose(smooth(p, ["f"] * 3, WEIGHTS, EDGE), expected)


def test_smoothing_does_not_mix_files_and_leaves_single_windows():
    p = np.zeros((7, 2))
    p[2] = 1.0  # spike at the end of file a
    p[3] = 0.7  # file b has only this window
    out = smooth(p, ["a", "a", "a", "b", "c", "c", "c"], WEIGHTS, EDGE)
    np.testing.assert_allclose(out[:3, 0], [0.0, 0.2, 0.9])
    np.testing.assert_allclose(out[3], [0.7, 0.7])
    np.testing.assert_array_equal(out[4:], 0.0)


def naive_smooth(p: np.ndarray, ids: list[str]) -> np.ndarray:
    out = p.copy()
    for f in dict.fromkeys(ids):
        rows = [i for i, x in enumerate(ids) if x == f]
        for j, i in enumerate(rows):
            if len(rows) == 1:
                continue
            if j == 0:
                out[i] = EDGE[0] * p[i] + EDGE[1] * p[rows[1]]
            elif j == len(rows) - 1:
                out[i] = EDGE[0] * p[i] + EDGE[1] * p[rows[-2]]
            else:
                out[i] = WEIGHTS[0] * p[rows[j - 1]] + WEIGHTS[1] * p[i] + WEIGHTS[2] * p[rows[j + 1]]
    return out


def test_smoothing_matches_a_window_by_window_loop():
    rng = np.random.default_rng(0)
    ids = ["a"] * 5 + ["b"] + ["c"] * 2 + ["d"] * 12
    p = rng.random((len(ids), 7))
    np.testing.assert_allclose(smooth(p, ids, WEIGHTS, EDGE), naive_smooth(p, ids))


def test_windows_of_a_file_must_be_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        smooth(np.zeros((3, 1)), ["a", "b", "a"], WEIGHTS, EDGE)
    with pytest.raises(ValueError, match="file_ids"):
        scale_by_file_max(np.zeros((3, 1)), ["a", "a"], 0.5)


def test_power_leaves_each_files_top_k_and_powers_the_rest():
    # file a's maxima: [0.9, 0.8, 0.1, 0.5] -> top 2 are classes 0, 1; file b's: [0.2, 0.3, 0.6, 0.7] -> 2, 3
    p = np.array(
        [
            [0.9, 0.4, 0.1, 0.5],
            [0.3, 0.8, 0.05, 0.2],
            [0.2, 0.3, 0.6, 0.7],
        ]
    )
    out = power_low_ranked(p, ["a", "a", "b"], top_k=2, power=2.0)
    expected = p.copy()
    expected[:2, 2:] **= 2
    expected[2, :2] **= 2
    np.testing.assert_allclose(out, expected)
    np.testing.assert_array_equal(power_low_ranked(p, ["a", "a", "b"], top_k=4, power=2.0), p)


def test_file_max_scaling_by_hand():
    p = np.array([[0.5, 0.2], [1.0, 0.1], [0.4, 0.4]])
    # file a's maxima [1.0, 0.2] give factors [0.5 + 0.5, 0.5 + 0.1]; file b's [0.4, 0.4] give [0.7, 0.7]
    expected = [[0.5, 0.12], [1.0, 0.06], [0.28, 0.28]]
    np.testing.assert_allclose(scale_by_file_max(p, ["a", "a", "b"], 0.5), expected)


def test_each_step_off_leaves_the_input_unchanged():
    rng = np.random.default_rng(1)
    ids = ["a"] * 4 + ["b"] * 3
    p = rng.random((7, 5))
    np.testing.assert_array_equal(smooth(p, ids, None, EDGE), p)
    np.testing.assert_array_equal(power_low_ranked(p, ids, 2, 1.0), p)
    np.testing.assert_array_equal(scale_by_file_max(p, ids, 0.0), p)
    np.testing.assert_array_equal(postprocess(p, ids, PostprocessConfig(smoothing=None)), p)


def test_postprocess_applies_the_steps_in_order_and_stays_in_unit_range():
    rng = np.random.default_rng(2)
    ids = np.repeat([f"f{i}" for i in range(700)], 12)
    p = rng.random((len(ids), 206)) ** 3
    p[::5] = 1.0
    cfg = PostprocessConfig(low_rank_power=2.0, low_rank_top_k=5, file_max_weight=0.6)
    out = postprocess(p, ids, cfg)
    step = smooth(p, ids, cfg.smoothing, cfg.smoothing_edge)
    step = power_low_ranked(step, ids, cfg.low_rank_top_k, cfg.low_rank_power)
    np.testing.assert_allclose(out, scale_by_file_max(step, ids, cfg.file_max_weight))
    assert out.shape == p.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out, p)


def test_config_accepts_lists_and_names_bad_keys():
    cfg = PostprocessConfig.from_dict({"smoothing": [0.25, 0.5, 0.25], "smoothing_edge": [0.8, 0.2]})
    assert cfg.smoothing == (0.25, 0.5, 0.25) and cfg.smoothing_edge == (0.8, 0.2)
    assert PostprocessConfig.from_dict({"smoothing": None}).smoothing is None
    assert PostprocessConfig().to_dict()["smoothing"] == [0.2, 0.6, 0.2]
    bad = [
        ({"smoothing": [0.5, 0.5, 0.5]}, "postprocess.smoothing "),
        ({"smoothing": [1.2, 0.0, -0.2]}, "postprocess.smoothing "),
        ({"smoothing": [0.5, 0.5]}, "postprocess.smoothing "),
        ({"smoothing_edge": [1.0]}, "postprocess.smoothing_edge"),
        ({"low_rank_power": 0}, "postprocess.low_rank_power"),
        ({"low_rank_top_k": 0}, "postprocess.low_rank_top_k"),
        ({"file_max_weight": 1.5}, "postprocess.file_max_weight"),
        ({"file_max": 0.5}, "unknown postprocess keys"),
    ]
    for values, message in bad:
        with pytest.raises(ValueError, match=message):
            PostprocessConfig.from_dict(values)
