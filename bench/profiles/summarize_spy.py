"""Summarise a py-spy raw (collapsed-stack) profile: the share of samples per function,
cumulative (the function anywhere on the stack, counted once per sample) and own (the
innermost frame).

    py-spy record --pid <pid> --duration 20 --rate 100 --gil --format raw -o worker.raw
    python bench/profiles/summarize_spy.py worker.raw [--top 60] [--grep PATTERN]

With `--gil`, py-spy keeps only samples whose thread holds the GIL, so the shares are of the
process's Python CPU time, not of its waiting (a thread blocked on the SQLite lock or a socket
does not count).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def summarize(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, cumulative per function, own per function) of py-spy raw lines."""
    total = 0
    cumulative: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, count = line.rsplit(" ", 1)
        n = int(count)
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")[1:]]  # [0] is the thread
        total += n
        for name in set(frames):
            cumulative[name] += n
        if frames:
            own[frames[-1]] += n
    return total, cumulative, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--grep", default="", help="only functions whose name matches")
    args = parser.parse_args()
    total, cumulative, own = summarize(args.raw.read_text().splitlines())
    wanted = re.compile(args.grep)
    print(f"samples {total}")
    for title, counts in (("cumulative", cumulative), ("own", own)):
        print(f"--- {title}")
        shown = [(k, n) for k, n in counts.most_common() if wanted.search(k)][: args.top]
        for name, n in shown:
            print(f"{n / max(total, 1) * 100:5.1f}% {name}")


if __name__ == "__main__":
    main()
