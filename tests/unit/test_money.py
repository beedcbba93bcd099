"""parse_amount / format_amount: the money rules of API.md, as executable examples.

Amounts are decimal strings in major units with at most the currency's number of
decimals; anything else (floats, exponents, signs, padding, too many decimals, more
than int64 minor units) is refused rather than guessed at.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.money import AMOUNT_TEXT_LEN_MAX, INT64_MAX, AmountError, format_amount, parse_amount

EXPONENTS = st.integers(min_value=0, max_value=8)
MINORS = st.integers(min_value=1, max_value=INT64_MAX)


@pytest.mark.parametrize(
    ("text", "minor"),
    [
        ("10", 1000),
        ("10.5", 1050),
        ("10.50", 1050),
        ("0.01", 1),
        ("0.1", 10),
        ("1", 100),
        ("92233720368547758.07", INT64_MAX),
    ],
)
def test_parse_valid_amounts_for_exponent_2(text: str, minor: int) -> None:
    assert parse_amount(text, 2) == minor


@pytest.mark.parametrize(
    "text",
    [
        "10.505",  # more decimals than the currency has
        "1e3",  # exponent notation
        "1E3",
        "-1",  # signs
        "+1",
        "0",  # zero is not an amount to move
        "0.00",
        " 1",  # padding
        "1 ",
        "10\n",
        "1.",  # dangling or missing parts
        ".5",
        ".",
        "",
        "01",  # leading zeros
        "00.5",
        "1,00",  # locale separators
        "1_000",
        "1.0.0",
        "NaN",
        "inf",
        "0x10",
        "\uff11\uff10",  # fullwidth digits: int() would accept them, the API must not
        "\u0661",  # Arabic-Indic one
        "92233720368547758.08",  # INT64_MAX + 1 minor units
        "100000000000000000000",
        "1" + "0" * (AMOUNT_TEXT_LEN_MAX + 5),  # long digit strings are cut off early
    ],
)
def test_parse_refuses_invalid_text(text: str) -> None:
    with pytest.raises(AmountError):
        parse_amount(text, 2)


@pytest.mark.parametrize("value", [10.5, 10, 0, None, b"10", Decimal("10"), ["10"], True])
def test_parse_refuses_non_strings(value: object) -> None:
    with pytest.raises(AmountError):
        parse_amount(value, 2)


def test_amount_error_is_a_value_error() -> None:
    # Handlers may catch ValueError generically; AmountError must still be one.
    with pytest.raises(ValueError):
        parse_amount("1e3", 2)


def test_allow_zero_accepts_zero_only_when_asked() -> None:
    assert parse_amount("0", 2, allow_zero=True) == 0
    assert parse_amount("0.00", 2, allow_zero=True) == 0
    assert parse_amount("0.5", 2, allow_zero=True) == 50
    with pytest.raises(AmountError):
        parse_amount("0", 2)
    with pytest.raises(AmountError):
        parse_amount("0.000", 2, allow_zero=True)  # still too many decimals
    with pytest.raises(AmountError):
        parse_amount("-0", 2, allow_zero=True)


def test_int64_boundary_for_exponent_2() -> None:
    assert parse_amount("92233720368547758.07", 2) == INT64_MAX
    with pytest.raises(AmountError):
        parse_amount("92233720368547758.08", 2)
    with pytest.raises(AmountError):
        parse_amount("92233720368547759", 2)


def test_exponent_0() -> None:
    assert parse_amount("10", 0) == 10
    assert parse_amount("9223372036854775807", 0) == INT64_MAX
    for text in ("10.5", "10.0", "1.", "9223372036854775808"):
        with pytest.raises(AmountError):
            parse_amount(text, 0)
    assert format_amount(10, 0) == "10"
    assert format_amount(-10, 0) == "-10"


def test_exponent_8() -> None:
    assert parse_amount("0.00000001", 8) == 1
    assert parse_amount("1", 8) == 100_000_000
    assert parse_amount("1.5", 8) == 150_000_000
    assert parse_amount("92233720368.54775807", 8) == INT64_MAX
    for text in ("0.000000001", "92233720368.54775808", "92233720369"):
        with pytest.raises(AmountError):
            parse_amount(text, 8)
    assert format_amount(1, 8) == "0.00000001"
    assert format_amount(INT64_MAX, 8) == "92233720368.54775807"


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (1050, 2, "10.50"),
        (1000, 2, "10.00"),
        (125, 2, "1.25"),
        (-125, 2, "-1.25"),
        (5, 2, "0.05"),
        (-5, 2, "-0.05"),
        (0, 2, "0.00"),
        (0, 0, "0"),
        (7, 3, "0.007"),
        (INT64_MAX, 2, "92233720368547758.07"),
        (-INT64_MAX, 2, "-92233720368547758.07"),
    ],
)
def test_format_amount_renders_full_decimals(minor: int, exponent: int, text: str) -> None:
    assert format_amount(minor, exponent) == text


def test_responses_render_the_full_decimals() -> None:
    assert format_amount(parse_amount("10.5", 2), 2) == "10.50"
    assert format_amount(parse_amount("10", 3), 3) == "10.000"


@settings(max_examples=200, deadline=None)
@given(minor=MINORS, exponent=EXPONENTS)
def test_round_trip(minor: int, exponent: int) -> None:
    text = format_amount(minor, exponent)
    assert parse_amount(text, exponent) == minor


@settings(max_examples=200, deadline=None)
@given(minor=MINORS, exponent=EXPONENTS)
def test_format_shape_and_sign(minor: int, exponent: int) -> None:
    text = format_amount(minor, exponent)
    decimals = rf"\.[0-9]{{{exponent}}}" if exponent else ""
    assert re.fullmatch(rf"(0|[1-9][0-9]*){decimals}", text), text
    assert format_amount(-minor, exponent) == "-" + text
    assert Decimal(text) == Decimal(minor).scaleb(-exponent)


@settings(max_examples=200, deadline=None)
@given(minor=st.integers(min_value=INT64_MAX + 1, max_value=INT64_MAX * 1000), exponent=EXPONENTS)
def test_anything_beyond_int64_is_refused(minor: int, exponent: int) -> None:
    with pytest.raises(AmountError):
        parse_amount(format_amount(minor, exponent), exponent)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=30), exponent=EXPONENTS)
def test_parse_either_refuses_or_agrees_with_decimal(text: str, exponent: int) -> None:
    # Whatever is accepted must mean exactly what Decimal reads, in range, with a canonical form.
    try:
        minor = parse_amount(text, exponent)
    except AmountError:
        return
    assert 0 < minor <= INT64_MAX
    assert Decimal(text).scaleb(exponent) == minor
    assert parse_amount(format_amount(minor, exponent), exponent) == minor


@given(exponent=EXPONENTS, text=st.sampled_from(["1e3", "-1", "0", "10.123456789", 10.5, "01"]))
def test_a_refusal_quotes_only_examples_valid_in_its_currency(exponent: int, text: object) -> None:
    with pytest.raises(AmountError) as refused:
        parse_amount(text, exponent, name="overdraft_limit")
    message = str(refused.value)
    assert message.startswith("overdraft_limit "), message
    for example in re.findall(r'"([^"]*)"', message):
        assert parse_amount(example, exponent) > 0, (exponent, message)
