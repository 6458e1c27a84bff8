"""The configuration file's schema (services/config_sync) against the admin rules."""

from __future__ import annotations

import pytest

from ari_app.domain.errors import InvalidValue
from ari_app.services import admin, config_sync


def test_every_hotline_setting_is_in_the_file_schema() -> None:
    """A setting added to services/admin must be added to HotlineConfig too, or export
    and apply would silently skip it."""
    assert set(config_sync.HotlineConfig.model_fields) >= admin.HOTLINE_SETTINGS


def test_values_are_checked_by_the_admin_rules_and_located() -> None:
    config, _ = config_sync.parse_config(
        "hotlines:\n- number: 0301\n  name: '  Bau   amt '\n  max_wait_s: 1h30m\n"
        "  vm_notify: [a@example.org]\n  strategy: LINEAR\n",
        "t.yaml",
    )
    hotline = config.hotlines[0]
    assert (hotline.number, hotline.name, hotline.max_wait_s) == ("0301", "Bau amt", 5400)
    assert hotline.settings()["strategy"].value == "linear"
    assert set(hotline.settings()) == {"name", "max_wait_s", "vm_notify", "strategy"}
    with pytest.raises(InvalidValue, match=r"^t\.yaml:3: hotlines\[0\]\.vm_notify: e-mail address"):
        config_sync.parse_config(
            "hotlines:\n- number: '500'\n  vm_notify: [not-an-address]\n  name: A\n", "t.yaml"
        )


def test_schema_is_json_schema_of_the_models() -> None:
    schema = config_sync.json_schema()
    hotline = schema["$defs"]["HotlineConfig"]["properties"]
    assert hotline["max_wait_s"]["default"] == 300
    assert hotline["strategy"]["default"] == "ring_all"
    assert set(schema["$defs"]["AgentConfig"]["properties"]) == {
        "number", "name", "device", "external_numbers", "language",
    }  # fmt: skip
