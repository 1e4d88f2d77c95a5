import pytest

from pipelines.core.merkle import EMPTY_ROOT, audit_path, merkle_root, root_from_path

# RFC 6962 / Certificate Transparency reference vectors (the leaves and roots
# used by the CT implementations' own Merkle tree tests).
LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f"]]


ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_rfc6962_reference_roots():
    for size, root in enumerate(ROOTS, start=1):
        assert merkle_root(LEAVES[:size]) == root, size


def test_empty_tree_is_the_hash_of_nothing():
    assert merkle_root([]) == EMPTY_ROOT == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_order_and_content_matter():
    assert merkle_root([b"a", b"b"]) != merkle_root([b"b", b"a"])
    assert merkle_root([b"a", b"b"]) != merkle_root([b"a", b"c"])


# Audit paths of the same reference tree (google/certificate-transparency,
# cpp/merkletree/merkle_tree_test.cc): (leaf index, tree size, path).
PATHS = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_rfc6962_reference_audit_paths(index, size, path):
    assert [h.hex() for h in audit_path(LEAVES[:size], index)] == path
    assert root_from_path(LEAVES[index], index, size, [bytes.fromhex(h) for h in path]).hex() == ROOTS[size - 1]


def test_every_path_of_every_small_tree_leads_to_its_root_and_nothing_else_does():
    for size in range(1, 9):
        for index in range(size):
            path = audit_path(LEAVES[:size], index)
            assert root_from_path(LEAVES[index], index, size, path).hex() == ROOTS[size - 1]
            other = LEAVES[(index + 1) % size] if size > 1 else b"x"
            assert root_from_path(other, index, size, path).hex() != ROOTS[size - 1]
            if path:
                assert root_from_path(LEAVES[index], index, size, path[:-1]) is None  # too short
                assert root_from_path(LEAVES[index], index, size, path + [path[0]]) is None  # too long
    assert root_from_path(LEAVES[0], 3, 3, []) is None  # no such leaf


def test_a_leaf_is_the_same_whether_its_times_are_milliseconds_or_what_avro_reads_back():
    from datetime import UTC, datetime, timedelta

    from pipelines.core.merkle import timestamps_as_millis, violation_leaf

    def at(ms: int) -> datetime:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)

    # 1796204580123 ms: int(datetime.timestamp() * 1000) gives ...122 for some such values; the leaf must not.
    written = {"violation_id": "v", "event_time_ms": 1796204580123, "window": {"start_ms": 1796204580123, "end_ms": 1796204640007},
               "source": None, "data_categories": ["a", "é"]}
    read_back = {**written, "event_time_ms": at(1796204580123),
                 "window": {"start_ms": at(1796204580123), "end_ms": at(1796204640007)}}
    assert timestamps_as_millis(read_back) == written
    assert violation_leaf(read_back) == violation_leaf(written)
    assert all(timestamps_as_millis(at(ms)) == ms for ms in range(1796204580000, 1796204581000))
