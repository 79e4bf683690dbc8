"""The long run of the wire-level fuzzer: ``tests/test_wire_fuzz.py``'s strategies, more examples.

    .venv/bin/python scripts/fuzz_wire.py --examples 2000 --backend native
    .venv/bin/python scripts/fuzz_wire.py --examples 500 --backend hypercorn --target frames

Starts one ``triows run tests.fuzz_app:app`` process on 127.0.0.1 (restarted after a
failed check, so that hypothesis can shrink), runs each target's strategy for
``--examples`` examples with shrinking on, prints the minimal failing example with
the exact bytes it sent, and kills the server on the way out.  Exit status 1 if any
target failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import given

from tests import test_wire_fuzz as fuzz


def example_for(runner: Any, server: fuzz.ServerProcess) -> Any:
    """A one-argument function for @given: run ``case`` against ``server``."""

    def example(case: Any) -> None:
        runner(server, case)

    return example


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="examples per target")
    parser.add_argument("--backend", choices=fuzz.BACKENDS, default="native")
    parser.add_argument(
        "--target",
        action="append",
        choices=[name for name, _, _ in fuzz.TARGETS],
        help="what to fuzz (repeatable; default: all)",
    )
    parser.add_argument("--no-shrink", dest="shrink", action="store_false")
    args = parser.parse_args()
    failed = []
    with fuzz.running_server(args.backend) as server:
        for name, strategy, runner in fuzz.TARGETS:
            if args.target and name not in args.target:
                continue

            test = fuzz.fuzz_settings(args.examples, shrink=args.shrink)(
                given(strategy)(example_for(runner, server))
            )
            started = time.monotonic()
            print(f"{args.backend} {name}: {args.examples} examples ...", flush=True)
            try:
                test()
            except Exception:
                failed.append(name)
                traceback.print_exc()
                print(f"{args.backend} {name}: FAILED", flush=True)
            else:
                elapsed = time.monotonic() - started
                print(f"{args.backend} {name}: ok in {elapsed:.1f} s", flush=True)
        print(f"server restarts: {server.restarts}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
