"""Formatting shared by the commands that print tables."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """``59m52s``, ``3h05m``, ``expired`` or ``-`` (unknown)."""
    if seconds is None:
        return "-"
    if seconds < 0:
        return "expired"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
