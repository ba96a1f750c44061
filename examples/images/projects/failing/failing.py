#!/usr/bin/env python3
"""A test entry point: copy every file under --input-dir to the same relative path under
--output-dir, and exit 1 after printing `failing on purpose: <relative path>` to stderr when
an input's relative path contains --fail-on (if --fail-on is not empty).

--fail-attempts N (N > 0) fails only while CONCURRENT_ATTEMPT (1-based, set by the worker;
1 when unset) is at most N, so a retried shard succeeds on attempt N + 1.
--sleep S sleeps S seconds first (for timeout, heartbeat and kill tests).
Standard library only.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Copy inputs to outputs; fail on purpose.")
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--fail-on", default="")
    parser.add_argument("--fail-attempts", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=0.0)
    return parser.parse_args(argv)


def files_under(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        base = Path(dirpath).relative_to(root)
        found.extend(base / name for name in filenames)
    return sorted(found)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    attempt = int(os.environ.get("CONCURRENT_ATTEMPT") or 1)
    print(f"failing: attempt {attempt}, fail_on {args.fail_on!r}, "
          f"fail_attempts {args.fail_attempts}, sleep {args.sleep}", flush=True)
    if args.sleep > 0:
        time.sleep(args.sleep)
    fail_now = bool(args.fail_on) and (args.fail_attempts <= 0 or attempt <= args.fail_attempts)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    copied = 0
    for rel in files_under(args.input_dir):
        if fail_now and args.fail_on in rel.as_posix():
            print(f"failing on purpose: {rel.as_posix()}", file=sys.stderr, flush=True)
            return 1
        target = args.output_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.input_dir / rel, target)
        copied += 1
    print(f"failing: copied {copied} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
