"""docs/contract.md stays true: its variables are the settings' fields (with their defaults)
and its metrics are the ones the code defines, no more and no fewer."""

from __future__ import annotations

import msgspec

from pipeline.settings import SECTIONS, Settings
from tests import contract

NOT_SETTINGS = {"RDKAFKA_*"}  # a prefix, passed through to librdkafka


def declared() -> dict[str, object]:
    fields = {}
    for struct in (*SECTIONS.values(), Settings):
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            if field.name not in SECTIONS and field.name != "rdkafka":
                fields[field.name.upper()] = field.default
    return fields


def test_every_variable_on_the_page_is_a_setting_and_every_setting_is_on_the_page() -> None:
    page = set(contract.variables()) - NOT_SETTINGS
    # PROMETHEUS_MULTIPROC_DIR is prometheus-client's own variable; the page explains it in prose.
    assert page == set(declared()) - {"PROMETHEUS_MULTIPROC_DIR"}


def test_the_defaults_on_the_page_are_the_declared_ones() -> None:
    fields = declared()
    for name, default in contract.variables().items():
        if name in NOT_SETTINGS:
            continue
        value = fields[name]
        if isinstance(value, bool):
            assert default.split()[0] == str(value).lower(), name
        elif isinstance(value, frozenset) or value == "":
            assert default.startswith("(empty"), name
        else:
            assert default.replace(",", "") == str(value), f"{name}: page {default!r}, code {value!r}"


def test_the_metrics_on_the_page_are_those_the_code_defines() -> None:
    defined = contract.defined_metrics()
    assert set(contract.metrics()) == defined
