"""Shared plumbing for the absl binaries in bin/: quiet TensorFlow, clean errors."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(program, main):
    """Run `main()`; a ValueError becomes one line on stderr and exit status 2."""
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    try:
        main()
    except ValueError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
