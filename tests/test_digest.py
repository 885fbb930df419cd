"""The multiset hash that map tasks compute in pieces (mr_tl.digest.MultisetHash)."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from mr_tl.digest import MultisetHash

items = st.lists(st.binary(max_size=40), max_size=30)


@given(items, st.randoms())
def test_any_split_and_order_gives_the_same_digest(values, random):
    whole = MultisetHash.of(values)
    shuffled = list(values)
    random.shuffle(shuffled)
    cut = random.randint(0, len(shuffled))
    parts = MultisetHash.of(shuffled[:cut]).update(MultisetHash.of(shuffled[cut:]))
    assert parts.hexdigest() == whole.hexdigest()
    # through counters, as a job reports it
    assert MultisetHash.from_counters(parts.counters()) == whole


@given(items, st.binary(max_size=40))
def test_an_extra_missing_or_changed_item_changes_the_digest(values, extra):
    whole = MultisetHash.of(values)
    assert MultisetHash.of(values + [extra]) != whole
    if values:
        assert MultisetHash.of(values[1:]) != whole
        changed = [values[0] + b"x"] + values[1:]
        assert MultisetHash.of(changed) != whole


def test_digest_is_the_lane_sum_of_sha256_prefixes():
    values = [b"alpha", b"beta"]
    lanes = [0, 0, 0, 0]
    for v in values:
        d = hashlib.sha256(v).digest()
        for i in range(4):
            lanes[i] = (lanes[i] + int.from_bytes(d[4 * i:4 * i + 4], "little")) % 2 ** 32
    assert MultisetHash.of(values).hexdigest() == "".join("%08x" % x for x in lanes)
    assert MultisetHash.of(["alpha", "beta"]) == MultisetHash.of(values)  # text is UTF-8
