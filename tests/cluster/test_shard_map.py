"""The static shard map (``--shard-map``): parsing and its validation errors."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from amber.cluster.slots import SLOTS, load_shard_map, parse_shard_map, split_slots
from amber.errors import InvalidArgument
from amber.server.settings import ServeSettings


def two_groups(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "epoch": 3,
        "groups": [
            {
                "name": "a",
                "slots": [[0, 8191]],
                "members": [{"id": "n1", "resp": "127.0.0.1:7400"}, {"id": "n2", "resp": "h:7410"}],
            },
            {"name": "b", "slots": [[8192, 16383]], "members": [{"id": "n3", "resp": "h:7420"}]},
        ],
    }
    doc.update(changes)
    return doc


def test_a_valid_map() -> None:
    slot_map = parse_shard_map(two_groups())
    assert slot_map.epoch == 3 and slot_map.assigned() == SLOTS
    assert slot_map.owner(0) == "a" and slot_map.owner(16383) == "b"
    assert [m.role for m in slot_map.groups["a"]] == ["master", "replica"]
    assert slot_map.group_of("n3") == "b" and slot_map.group_of("n9") is None


def test_split_slots_covers_every_slot_once() -> None:
    for groups in (1, 2, 3, 7):
        ranges = split_slots(groups)
        assert ranges[0][0] == 0 and ranges[-1][1] == SLOTS - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slots": [[0, 8000]]}, "slots 8001-8191 have no owner"),
        ({"slots": [[0, 9000]]}, "slot 8192 is owned twice"),
        ({"slots": [[0, 8191], [0, 5]]}, "owned twice"),
        ({"members": []}, "has no members"),
        ({"members": [{"id": "n3", "resp": "h:1"}]}, "more than one group"),
        ({"members": [{"id": "n1", "resp": "nohostport"}]}, "resp must be host:port"),
        ({"name": "b"}, "given twice"),
    ],
)
def test_invalid_maps_say_why(change: dict[str, Any], message: str) -> None:
    doc = two_groups()
    doc["groups"][0].update(change)
    with pytest.raises(ValueError, match=message):
        parse_shard_map(doc)


def test_the_last_slots_must_be_owned() -> None:
    doc = two_groups()
    doc["groups"][1]["slots"] = [[8192, 16000]]
    with pytest.raises(ValueError, match="slots 16001-16383 have no owner"):
        parse_shard_map(doc)


def test_toml_file_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text(
        'epoch = 2\n[[groups]]\nname = "g1"\nslots = [[0, 16383]]\n'
        'members = [{id = "n1", resp = "127.0.0.1:7400"}, {id = "n2", resp = "127.0.0.1:7410"}]\n'
    )
    assert load_shard_map(str(path)).epoch == 2
    common = {"cluster_mode": "redis", "shard_map": str(path), "insecure_cluster": True}
    ServeSettings(node_id="n1", peers="n2=127.0.0.1:7412", **common)
    with pytest.raises(InvalidArgument, match="node 'n7' is in no group"):
        ServeSettings(node_id="n7", **common)
    with pytest.raises(InvalidArgument, match="peers n3 are not in group 'g1'"):
        ServeSettings(node_id="n1", peers="n3=127.0.0.1:7422", **common)
    with pytest.raises(InvalidArgument, match="needs --cluster-mode redis"):
        ServeSettings(node_id="n1", shard_map=str(path), insecure_cluster=True)
