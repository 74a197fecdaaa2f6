"""State keys: every key round-trips exactly through its text, whatever its ids hold."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoppulse.streams.state_keys import (
    META,
    CustomerKey,
    EmittedKey,
    FinalKey,
    IdsKey,
    PartialKey,
    ProgressKey,
    SessionKey,
    StepsKey,
    TicketKey,
    VisitorKey,
    WindowDeltaKey,
    WindowKey,
    decode_key,
    decode_merge_key,
    encode_key,
    state_rows,
    table_key,
)

# Ids as producers may send them: any text parse accepts (no lone surrogates: JSON with one is
# refused as invalid_json), with the separators and the escape character likely.
ids = st.text(alphabet=st.sampled_from("ab|% 7C20é\t") | st.characters(exclude_categories=["Cs"]), max_size=12)
ints = st.integers(min_value=0, max_value=2**62)

state_keys = st.one_of(
    st.just(META),
    st.builds(WindowKey, ids, ints, ints),
    st.builds(WindowDeltaKey, ids, ints, ints),
    st.builds(IdsKey, ints),
    st.builds(SessionKey, ids, ids),
    st.builds(VisitorKey, ids),
    st.builds(CustomerKey, ids),
    st.builds(TicketKey, ids),
)
merge_keys = st.one_of(
    st.builds(PartialKey, ids, ints, ints, ints),
    st.builds(ProgressKey, ids, ints),
    st.builds(EmittedKey, ids),
    st.builds(FinalKey, ids, ints, ints),
    st.builds(StepsKey, ids, ints),
)


@given(state_keys)
def test_state_key_round_trips(key):
    assert decode_key(encode_key(key)) == key


@given(merge_keys)
def test_merge_key_round_trips(key):
    assert decode_merge_key(encode_key(key)) == key


@given(st.lists(state_keys, max_size=20))
def test_distinct_keys_have_distinct_texts(keys):
    assert len({encode_key(k) for k in keys}) == len(set(keys))


@given(st.integers(min_value=0, max_value=10_000), state_keys)
def test_table_key_round_trips(partition, key):
    neighbour = partition * 10 + 1  # its number starts with `partition`'s: the prefixes must not overlap
    rows = [(table_key(partition, encode_key(key)), b"1"), (table_key(neighbour, encode_key(key)), b"2")]
    assert list(state_rows(partition, rows)) == [(encode_key(key), b"1")]


def test_plain_ids_keep_the_format_written_before_the_codec():
    assert encode_key(META) == "meta"
    assert encode_key(WindowKey("traffic", 60_000, 120_000)) == "w|traffic|60000|120000"
    assert encode_key(IdsKey(7)) == "ids|7"
    assert encode_key(SessionKey("v-1", "s-1")) == "s|v-1 s-1"
    assert encode_key(VisitorKey("v-1")) == "v|v-1"
    assert encode_key(CustomerKey("12346")) == "c|12346"
    assert encode_key(TicketKey("INC0000045")) == "t|INC0000045"
    assert encode_key(PartialKey("sales", 60_000, 0, 3)) == "w|sales|60000|0|3"
    assert encode_key(ProgressKey("sales", 3)) == "p|sales|3"
    assert encode_key(EmittedKey("sales")) == "e|sales"
    assert encode_key(FinalKey("sales", 60_000, 0)) == "f|sales|60000|0"
    assert encode_key(StepsKey("support", 1)) == "s|support|1"
    assert table_key(2, "meta") == b"2|meta"


def test_separators_in_ids_are_escaped():
    assert encode_key(SessionKey("a b", "c|d")) == "s|a%20b c%7Cd"
    assert encode_key(VisitorKey("100%")) == "v|100%25"
    assert decode_key("v|50%off") == VisitorKey("50%off")  # not an escape: read as written


@pytest.mark.parametrize("text", ["", "meta|x", "w|traffic|60000", "ids|x", "s|no-space", "z|1", "x"])
def test_text_that_is_no_state_key_is_refused(text):
    with pytest.raises(ValueError, match="not a source state key"):
        decode_key(text)


@pytest.mark.parametrize("text", ["w|sales|1|2", "p|sales", "e", "f|sales|1", "s|support|x", "meta"])
def test_text_that_is_no_merge_key_is_refused(text):
    with pytest.raises(ValueError, match="not a merge state key"):
        decode_merge_key(text)
