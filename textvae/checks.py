"""The type checks every user-facing setting shares: Python counts True and False as ints, a user never means a
count or a size by them, so a whole number or a number here is never a bool. One place for the rule, instead of
`isinstance(value, int) and not isinstance(value, bool)` written wherever a setting is checked."""

from __future__ import annotations


def is_whole(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    """An int or a float that is not a bool (NaN and infinities included: callers that refuse them say so)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_number(value) -> bool:
    """`is_real`, and not NaN."""
    return is_real(value) and value == value
