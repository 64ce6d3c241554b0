"""``python -m reid_core.train`` / ``torchrun -m reid_core.train``: the train subcommand on its own."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from reid_core.errors import CxrReidError
from reid_core.train.cli import TRAIN_EXAMPLES, add_train_arguments, run_train_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-reid-train", description="Train an identity embedder.",
                                     epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO if rank == "0" else logging.WARNING,
                        format=f"%(levelname)s [rank {rank}] %(name)s: %(message)s")
    try:
        return run_train_command(args)
    except CxrReidError as exc:
        print(f"cxr-reid train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxr-reid train: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
