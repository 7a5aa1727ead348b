"""Kubernetes quantity grammar, as tables and properties."""

from __future__ import annotations

import contextlib
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slotpool.domain.quantity import QuantityError, parse_quantity, parse_resource_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Fraction(0)),
        ("1", Fraction(1)),
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("1.5", Fraction(3, 2)),
        ("100n", Fraction(1, 10**7)),
        ("2k", Fraction(2000)),
        ("1Ki", Fraction(1024)),
        ("512Mi", Fraction(512 * 2**20)),
        ("4Gi", Fraction(4 * 2**30)),
        ("1G", Fraction(10**9)),
        ("1e3", Fraction(1000)),
        ("1E-3", Fraction(1, 1000)),
        ("+2", Fraction(2)),
        ("-2", Fraction(-2)),
    ],
)
def test_valid_quantities(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1.2.3", "2 Gi", "2gi", "2GB", "1Mib", "m", "Ki", "--1", "1e", "0x10", "1e99"],
)
def test_invalid_quantities(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_resource_quantities_cannot_be_negative() -> None:
    with pytest.raises(QuantityError, match="negative"):
        parse_resource_quantity("-1")


def test_binary_and_decimal_suffixes_differ() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1000m") == parse_quantity("1")


@given(st.integers(min_value=0, max_value=10**9))
def test_milli_of_n_thousand_is_n(n: int) -> None:
    assert parse_quantity(f"{n * 1000}m") == parse_quantity(str(n))


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti"]))
def test_binary_suffix_is_a_power_of_two_multiple(n: int, suffix: str) -> None:
    value = parse_quantity(f"{n}{suffix}")
    assert value.denominator == 1
    assert value == n * parse_quantity(f"1{suffix}")


@given(st.text(max_size=12))
def test_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(QuantityError):
        parse_quantity(text)
