"""Flagging: the reference's outlier rules, DQ bits and NaN matching."""
