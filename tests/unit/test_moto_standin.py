"""scripts/moto-standin.py's ``_custom_id_`` reading (the ids compose-aws-init.py asks for); the
whole script runs as a process in tests/integration/test_compose_standins.py."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from urllib.parse import urlencode

import pytest

from tests.conftest import REPO


def _standin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("moto_standin", REPO / "scripts" / "moto-standin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _body(action: str, key: str, value: str) -> bytes:
    return urlencode(
        {
            "Action": action,
            "TagSpecification.1.ResourceType": "subnet",
            "TagSpecification.1.Tag.1.Key": "Name",
            "TagSpecification.1.Tag.1.Value": "private",
            "TagSpecification.1.Tag.2.Key": key,
            "TagSpecification.1.Tag.2.Value": value,
        }
    ).encode()


def test_custom_id_is_read_from_the_tag_specification() -> None:
    standin = _standin()
    assert standin.custom_id(_body("CreateSubnet", "_custom_id_", "subnet-0abc")) == (
        "CreateSubnet",
        "subnet-0abc",
    )
    assert standin.custom_id(_body("RegisterImage", "_custom_id_", "ami-0abc")) == (
        "RegisterImage",
        "ami-0abc",
    )
    assert standin.custom_id(_body("CreateSubnet", "Owner", "subnet-0abc")) is None  # no such tag
    assert standin.custom_id(_body("RunInstances", "_custom_id_", "i-0abc")) is None  # not an id it sets


def test_a_custom_id_of_the_wrong_kind_is_refused_with_the_value_and_the_prefix() -> None:
    with pytest.raises(
        ValueError, match=r"_custom_id_: 'sg-0abc' is not an id for CreateSubnet; it starts with 'subnet-'"
    ):
        _standin().custom_id(_body("CreateSubnet", "_custom_id_", "sg-0abc"))
