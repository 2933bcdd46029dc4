#!/usr/bin/env python3
"""Allocations per request from a callgrind profile: sums the calls the
profile records into the allocator's entry points (malloc, operator new,
aligned_alloc) and lists who made them, each divided by REQUESTS.

    KEEP_PROFILE=1 CONFIG=FILE bench/instructions.sh gateway /api-gateway/dashboard 4
    bench/allocations.py callgrind.out REQUESTS     (REQUESTS: what instructions.sh printed)
"""
import collections
import re
import sys

ALLOC = re.compile(r"^(malloc|calloc|realloc|aligned_alloc|posix_memalign|operator new)")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, requests = sys.argv[1], float(sys.argv[2])
    names, by_caller = {}, collections.Counter()
    caller = callee = None
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if m:
                kind, idx, name = m.groups()
                if name:
                    names[idx] = name
                if kind == "fn":
                    caller = idx
                else:
                    callee = idx
                continue
            m = re.match(r"^calls=(\d+)", line)
            if m and callee is not None and ALLOC.search(names.get(callee, "")):
                by_caller[caller] += int(m.group(1))
    # An allocator entry point that calls another (aligned_alloc -> malloc)
    # is not a caller of its own.
    callers = {k: v for k, v in by_caller.items() if not ALLOC.search(names.get(k, ""))}
    print(f"{sum(callers.values()) / requests:.2f} allocations a request, by caller:")
    for idx, n in sorted(callers.items(), key=lambda kv: -kv[1]):
        if n / requests >= 0.05:
            print(f"  {n / requests:6.2f}  {names.get(idx, '?')[:140]}")


if __name__ == "__main__":
    main()
