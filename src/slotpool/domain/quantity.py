"""Kubernetes resource quantities, parsed by the API server's own grammar.

The seed stored whatever it was given; a quantity the API server will refuse must be refused here,
when the operator saves it, not minutes later when a Pod is created. Values are compared exactly
(as fractions), so ``500m`` and ``0.5`` are equal and ``1Gi`` is above ``1G``.

    <quantity>      ::= <signedNumber><suffix>
    <number>        ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>        ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>      ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>     ::= m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exp>[+-]?[0-9]+)|(?P<decimal>[numkMGTPE]?))$"
)
# An exponent beyond this is certainly a typo and would make Fraction arithmetic explode.
_MAX_EXPONENT = 30

VALID_FORMS = 'a number with an optional suffix, e.g. "500m", "2", "1.5", "512Mi", "4Gi", "1e3"'


class QuantityError(ValueError):
    pass


def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity; raises QuantityError on anything the API server refuses."""
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity: use {VALID_FORMS}")
    value = Fraction(match["number"])
    if match["binary"]:
        value *= _BINARY[match["binary"]]
    elif match["exp"] is not None:
        exponent = int(match["exp"])
        if abs(exponent) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r}: exponent {exponent} is out of range")
        value *= Fraction(10) ** exponent
    else:
        value *= _DECIMAL[match["decimal"] or ""]
    return -value if match["sign"] == "-" else value


def parse_resource_quantity(text: str) -> Fraction:
    """A quantity for a container resource: like parse_quantity, but never negative."""
    value = parse_quantity(text)
    if value < 0:
        raise QuantityError(f"{text!r}: a resource quantity cannot be negative")
    return value
