"""HalfSpaceForest scores exactly (==) as river's HalfSpaceTrees on the same calls, also after
a round trip through its snapshot."""

import copy
import random

import orjson
import pytest
from river import anomaly

from monitor.detectors import window_anomaly as wa
from monitor.detectors.half_space import HalfSpaceForest

NAMES = ("b", "c", "a", "e", "d")  # not sorted: river sorts its feature names, the forest not
CONFIGS = [  # (n_trees, height, window_size): the detector's, and small ones with many pivots
    (10, 8, 100),
    (3, 4, 20),
    (5, 6, 7),
]


def thresholds(config, seed, names=NAMES) -> list[float]:
    """Every split value of the trees river builds for this seed."""
    n_trees, height, window_size = config
    model = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                   seed=seed)
    model.learn_one(dict.fromkeys(names, 0.5))
    return [n.threshold for t in model.trees for n in t.iter_dfs() if hasattr(n, "threshold")]


def points(rng: random.Random, n: int, on_split: list[float]):
    """Coarse values as the detector's features are, uniform ones, the bounds, and values
    exactly on a split (where river goes right)."""
    def value():
        kind = rng.random()
        if kind < 0.3:
            return rng.randrange(51) / 50
        if kind < 0.5:
            return rng.choice(on_split)
        if kind < 0.55:
            return rng.choice((0.0, 1.0))
        return rng.random()
    for _ in range(n):
        # Repeat points now and then (real windows do), and keep some mass concentrated so
        # walks go deep as well as stop early.
        if rng.random() < 0.3:
            yield tuple(rng.choice((0.1, 0.2)) for _ in NAMES)
        else:
            yield tuple(value() for _ in NAMES)


def river_model(config, seed):
    n_trees, height, window_size = config
    return anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                  seed=seed)


def forest(config, seed):
    n_trees, height, window_size = config
    return HalfSpaceForest(NAMES, n_trees=n_trees, height=height, window_size=window_size,
                           seed=seed)


def run_both(river, ours, calls) -> int:
    """Play the calls on both (score first, then learn, as the detector does); every score
    must be equal, of the same type. Returns how many scores were compared."""
    compared = 0
    for score, learn, x in calls:
        if score:
            expected = river.score_one(dict(zip(NAMES, x)))
            got = ours.score_one(x)
            assert got == expected and type(got) is type(expected), (compared, x)
            compared += 1
        if learn:
            river.learn_one(dict(zip(NAMES, x)))
            ours.learn_one(x)
    return compared


def calls_for(config, seed, n):
    rng = random.Random(seed * 7919 + n)
    on_split = thresholds(config, seed)
    calls = []
    for x in points(rng, n, on_split):
        kind = rng.random()  # scored and learned, only scored (an alert), or only learned
        calls.append((kind < 0.8, kind < 0.5 or kind >= 0.8, x))
    return calls


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_scores_equal_rivers_at_every_step(config, seed):
    river, ours = river_model(config, seed), forest(config, seed)
    calls = calls_for(config, seed, 3000)
    assert run_both(river, ours, calls) > 2000
    assert river.counter == ours._counter
    # The run went through many windows, and scores were not all alike.
    scores = {ours.score_one(x) for _, _, x in calls[:500]}
    assert len(scores) > 10


def test_scores_are_rivers_zero_in_the_first_window():
    river, ours = river_model(CONFIGS[0], 42), forest(CONFIGS[0], 42)
    x = (0.5,) * len(NAMES)
    assert ours.score_one(x) == 0 and type(ours.score_one(x)) is int
    for _ in range(99):
        ours.learn_one(x)
        river.learn_one(dict(zip(NAMES, x)))
    assert ours.score_one(x) == river.score_one(dict(zip(NAMES, x))) == 0
    ours.learn_one(x)
    river.learn_one(dict(zip(NAMES, x)))
    # A window of one point: that point is as usual as can be, any other point is not.
    assert ours.score_one(x) == river.score_one(dict(zip(NAMES, x))) == 0.0
    assert type(ours.score_one(x)) is float
    y = (0.9,) * len(NAMES)
    assert ours.score_one(y) == river.score_one(dict(zip(NAMES, y))) > 0.5


@pytest.mark.parametrize("config", CONFIGS)
def test_trees_are_rivers(config):
    river, ours = river_model(config, 7), forest(config, 7)
    river.learn_one(dict.fromkeys(NAMES, 0.5))
    nodes = [n for t in river.trees for n in _breadth_first(t)]
    assert ours._threshold.tolist() == [getattr(n, "threshold", 0.0) for n in nodes]
    assert [NAMES[i] for i, n in zip(ours._feature.tolist(), nodes)
            if hasattr(n, "feature")] == [n.feature for n in nodes if hasattr(n, "feature")]


def _breadth_first(root):
    level = [root]
    while level:
        yield from level
        level = [c for n in level for c in getattr(n, "children", ())]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("cut", [0, 3, 150, 1234])  # before any learning, in the first window
def test_a_river_model_converted_mid_stream_scores_on_as_river(config, cut):
    calls = calls_for(config, 5, 3000)
    river = river_model(config, 5)
    for _, learn, x in calls[:cut]:  # river alone up to the cut (scoring changes nothing)
        if learn:
            river.learn_one(dict(zip(NAMES, x)))
    ours = HalfSpaceForest.from_river(copy.deepcopy(river), NAMES)
    assert run_both(river, ours, calls[cut:]) > 1000


def through_json(forest: HalfSpaceForest) -> HalfSpaceForest:
    return HalfSpaceForest.from_plain(orjson.loads(orjson.dumps(forest.to_plain())))


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("cut", [0, 50, 1001])  # before learning, mid-window, after many pivots
def test_a_forest_restored_from_its_plain_form_scores_on_as_before(config, cut):
    calls = calls_for(config, 3, 3000)
    river, ours = river_model(config, 3), forest(config, 3)
    run_both(river, ours, calls[:cut])
    restored = through_json(ours)
    assert restored._pending == [list(x) for x in ours._pending]
    assert run_both(river, restored, calls[cut:]) > 1000


def test_the_detector_restored_from_its_snapshot_scores_on_as_river():
    names = wa.FEATURES
    rng = random.Random(11)
    xs = [tuple(rng.randrange(31) / 30 for _ in names) for _ in range(1300)]
    river = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=100, seed=42)
    det = wa.WindowAnomaly()  # the same seed and configuration
    for x in xs[:1050]:  # ten windows and half of one
        river.learn_one(dict(zip(names, x)))
        det.model.learn_one(x)
    det.learned = 1050
    again = wa.WindowAnomaly()
    again.load_state(det.state())
    assert again.learned == 1050 and again.model.window_size == 100
    for x in xs[1050:]:
        expected = river.score_one(dict(zip(names, x)))
        assert again.model.score_one(x) == det.model.score_one(x) == expected
        for model in (again.model, det.model):
            model.learn_one(x)
        river.learn_one(dict(zip(names, x)))
