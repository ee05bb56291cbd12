"""The task's filter of tokens read (monitor.bloom) and the size-bounded cache (monitor.lru)."""

import base64
import random
import string

import orjson
from hypothesis import given
from hypothesis import strategies as st

from monitor import bloom
from monitor.lru import SizedLRU


def words(n, seed):
    rnd = random.Random(seed)
    return ["".join(rnd.choice(string.ascii_lowercase + string.digits) for _ in range(9))
            for _ in range(n)]


def filled(tokens, chunk=50):
    layers = []
    for i in range(0, len(tokens), chunk):
        h = bloom.hashes(tokens[i:i + chunk])
        layers = bloom.add(layers, lambda m, h=h: bloom.bits_of(h, m))
    return layers


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=40))
def test_every_token_added_is_found_and_one_token_and_many_agree(tokens):
    layers = bloom.of(tokens)
    contains = bloom.reader(layers)
    assert all(contains(t) for t in tokens)
    # positions() (one token, Python ints) and bits_of() (numpy) set the same bits
    m = bloom.FIRST_BITS
    for t in tokens:
        expected = sum(1 << p for p in set(bloom.positions(t, m)))
        assert bloom.bits_of(bloom.hashes([t]), m) == expected


def test_false_positives_stay_under_the_bound_as_layers_fill():
    probes = words(20_000, seed=2)
    for n in (100, 400, 900):
        contains = bloom.reader(filled(words(n, seed=n)))
        rate = sum(map(contains, probes)) / len(probes)
        assert rate <= bloom.MAX_LAYERS * bloom.FILL_MAX ** bloom.K  # 2.4 %


def test_layers_are_bounded_and_the_oldest_tokens_are_forgotten_first():
    tokens = words(3000, seed=3)
    layers = filled(tokens)
    assert len(layers) <= bloom.MAX_LAYERS and sum(map(len, layers)) <= bloom.MAX_CHARS
    contains = bloom.reader(layers)
    assert all(contains(t) for t in tokens[-300:])
    assert sum(map(contains, tokens[:300])) < 30   # the first ones are gone


def test_a_task_that_reads_little_keeps_a_small_filter():
    smallest = len(base64.b64encode(bytes(bloom.FIRST_BITS // 8)))
    assert [len(layer) for layer in bloom.of(words(20, seed=7))] == [smallest]
    (big,) = bloom.of(words(300, seed=8))   # one layer as large as its first content needs
    bits, m = bloom._decode(big)
    assert m > bloom.FIRST_BITS and bits.bit_count() <= bloom.FILL_MAX * m


def test_reading_the_same_content_again_changes_nothing_and_the_state_stays_json():
    layers = bloom.of(words(60, seed=4))
    again = bloom.add(layers, lambda m: bloom.bits_of(bloom.hashes(words(60, seed=4)), m))
    assert again is layers
    assert orjson.loads(orjson.dumps({"clean": layers})) == {"clean": layers}


def test_a_large_reading_does_not_fill_a_layer_on_its_own():
    h = bloom.hashes(words(5000, seed=5))
    layers = bloom.add([], lambda m: bloom.bits_of(h[-bloom.capacity(m):], m))
    contains = bloom.reader(layers)
    assert sum(map(contains, words(5000, seed=6))) / 5000 < 0.01


def test_sized_lru_keeps_the_most_recent_values_within_its_capacity():
    cache = SizedLRU(100)
    cache.put("a", 1, 40)
    cache.put("b", 2, 40)
    assert cache.get("a") == 1          # a is now the most recent
    cache.put("c", 3, 40)               # over capacity: b, the least recent, goes
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.size == 80 and len(cache) == 2
    cache.put("huge", 4, 101)           # larger than the whole cache: not kept
    assert cache.get("huge") is None and cache.size == 80


def test_many_tokens_at_once_are_found_as_one_by_one():
    layers = filled(words(500, seed=9))
    probes = words(500, seed=9)[::7] + words(300, seed=10)
    contains = bloom.reader(layers)
    many = bloom.contains_many(layers, bloom.spread(bloom.hashes(probes)))
    assert many.tolist() == [contains(t) for t in probes]
    assert many.any() and not many.all()
