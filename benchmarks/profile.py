"""Summarise a py-spy profile taken with `python -m benchmarks.run --profile`.

    .venv/bin/python -m benchmarks.profile benchmarks/results/<run>/sipp/*/app-profile.txt

Prints the functions with the most samples, inclusive (anywhere on the stack) and
exclusive (on top), as a share of all samples. Frames look like `name (file:line)`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def read_stacks(paths: Iterable[Path]) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            match = _LINE.match(line)
            if match:
                frames = tuple(_FRAME_LINE.sub(")", f) for f in match.group(1).split(";"))
                stacks[frames] += int(match.group(2))
    return stacks


def summarise(stacks: Counter[tuple[str, ...]], top: int, grep: str) -> str:
    total = sum(stacks.values()) or 1
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    for frames, count in stacks.items():
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            exclusive[frames[-1]] += count
    out = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("exclusive", exclusive)):
        out.append(f"\n-- {title} --")
        rows = [(f, c) for f, c in counter.most_common() if grep in f][:top]
        out += [f"{c / total:6.1%}  {f}" for f, c in rows]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--grep", default="", help="only frames containing this text")
    args = p.parse_args(argv)
    print(summarise(read_stacks(args.paths), args.top, args.grep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
