"""Prints cargo-mutants' outcomes per file, from its caught/missed/timeout/unviable lists, and the score over the
viable mutants: caught / (caught + missed + timeout). Usage: score.py <mutants.out directory>."""

import collections
import pathlib
import sys

KINDS = ("caught", "missed", "timeout", "unviable")


def main(out: pathlib.Path) -> int:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    missed = []
    for kind in KINDS:
        listed = out / f"{kind}.txt"
        for line in listed.read_text().splitlines() if listed.exists() else []:
            counts[line.split(":", 1)[0]][kind] += 1
            if kind == "missed":
                missed.append(line)
    if not counts:
        print(f"no outcomes in {out}")
        return 1
    print(f"\n{'file':<48}" + "".join(f"{k:>10}" for k in KINDS) + f"{'score':>10}")
    total: collections.Counter = collections.Counter()
    for file in sorted(counts):
        c = counts[file]
        total.update(c)
        print(f"{file:<48}" + "".join(f"{c[k]:>10}" for k in KINDS) + f"{score(c):>10}")
    print(f"{'all':<48}" + "".join(f"{total[k]:>10}" for k in KINDS) + f"{score(total):>10}")
    if missed:
        print("\nmissed (a test to kill it, or a line in the README saying why it is equivalent):")
        print("\n".join(f"  {m}" for m in missed))
    return 0


def score(c: collections.Counter) -> str:
    viable = c["caught"] + c["missed"] + c["timeout"]
    return f"{100 * c['caught'] / viable:.1f} %" if viable else "-"


if __name__ == "__main__":
    sys.exit(main(pathlib.Path(sys.argv[1])))
