"""Statistics of timings, and tallies of business keys (records found per key asked for)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linearly interpolated percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, max and mean ({"n": 0} when empty)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_s": round(percentile(values, 50), 4),
        "p95_s": round(percentile(values, 95), 4),
        "p99_s": round(percentile(values, 99), 4),
        "max_s": round(max(values), 4),
        "mean_s": round(statistics.fmean(values), 4),
    }


def brief_summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p95, max and mean (nan when empty)."""
    return {
        "p50_s": round(percentile(values, 50), 4),
        "p95_s": round(percentile(values, 95), 4),
        "max_s": round(max(values), 4) if values else float("nan"),
        "mean_s": round(statistics.fmean(values), 4) if values else float("nan"),
    }


# --------------------------------------------------------------------------- business keys


def tally(expected: list[Any], found: list[Any]) -> dict[str, int]:
    """Business keys asked for vs. records found per key."""
    counts = Counter(found)
    wanted = set(expected)
    return {
        "requested": len(wanted),
        "records": sum(counts.values()),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "missing": len(wanted - set(counts)),
        "unexpected": len(set(counts) - wanted),
    }


def kinds_summary(kinds: dict[str, dict[str, int]], **extra: Any) -> dict[str, Any]:
    """One system's tallies by kind: requested, duplicates (and unexpected), missing, ok."""
    duplicates = sum(k["duplicates"] + k["unexpected"] for k in kinds.values())
    missing = sum(k["missing"] for k in kinds.values())
    failed = int(extra.get("failed", 0))
    return {
        "requested": sum(k["requested"] for k in kinds.values()),
        "duplicates": duplicates,
        "missing": missing,
        "by_kind": kinds,
        **extra,
        "ok": duplicates == 0 and missing == 0 and failed == 0,
    }


def effect(requested: int, applied: int, duplicates: int = 0, wrong: int = 0) -> dict[str, int]:
    """A tally for an effect (a budget moved, an assignment ended) rather than a record."""
    return {
        "requested": requested,
        "records": applied + duplicates,
        "duplicates": duplicates,
        "missing": requested - applied - duplicates - wrong,
        "unexpected": 0,
        "wrong": wrong,
    }


def system_summary(kinds: dict[str, dict[str, int]], **extra: Any) -> dict[str, Any]:
    """`kinds_summary` plus the effects' wrong values."""
    out = kinds_summary(kinds, **extra)
    out["wrong"] = sum(k.get("wrong", 0) for k in kinds.values())
    out["ok"] = out["ok"] and out["wrong"] == 0
    return out


def marked(text: str | None, marker: str) -> str | None:
    """What follows `marker` on the first line of `text` that starts with it."""
    for line in (text or "").splitlines():
        if line.startswith(marker):
            return line[len(marker) :]
    return None
