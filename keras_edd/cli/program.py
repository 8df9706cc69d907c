"""What every binary shares: flag errors as one line, the main wrapper, TensorFlow's
start-up without its notices, and the summary printed at the end. Binary-side only,
like the rest of keras_edd.cli.
"""

import os
import re
import sys

from absl import flags

from keras_edd import formatting


def check_no_arguments(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]!r}; every setting is a --flag")


def parse_flags(argv):
    """absl's flag parsing, with its errors as ValueError (one line, exit status 2).

    absl's own parser prints a usage hint and exits with status 1 on an unknown
    flag (--alhpa=0.9) or a value of the wrong type (--alpha=abc); every other bad
    value is a one-line error with status 2, and so are these.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as exc:
        message = " ".join(str(exc).split())
        choice = _NOT_A_CHOICE.fullmatch(message)
        if choice:  # a DEFINE_enum flag: worded as the configs' own choice errors
            name, value, allowed = choice.groups()
            raise ValueError(f"{name}={value!r}: allowed values are "
                             f"{', '.join(allowed.split('|'))}") from None
        raise ValueError(f"{message} (see --helpfull)") from None


# absl's error for a value outside a DEFINE_enum flag's choices.
_NOT_A_CHOICE = re.compile(r"flag --(\w+)=(.*): value should be one of <(.*)>")


def run_main(program, main):
    """app.run(main) with `parse_flags`; a ValueError becomes one line on stderr, exit 2.

    `main(argv)` gets the arguments left after the flags, as with app.run.
    """
    from absl import app
    # Line by line also when redirected to a file, so `tail -f` shows each line as printed.
    sys.stdout.reconfigure(line_buffering=True)
    try:
        app.run(lambda argv: _main_quietly(main, argv), flags_parser=parse_flags)
    except ValueError as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


def _main_quietly(main, argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    return main(argv)


class _DropRetracingNotices:
    """logging filter: each (model, attack) pair is traced once on purpose, so TensorFlow's
    "N out of the last N calls ... triggered tf.function retracing" notice is noise here."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


# What TensorFlow's C++ code prints while it loads, before its logging is set up (so
# TF_CPP_MIN_LOG_LEVEL cannot stop it): the oneDNN notice, twice, each after absl's
# pre-initialisation warning, and the CPU-instructions notice.
_STARTUP_NOISE = ("All log messages before absl::InitializeLog() is called",
                  "oneDNN custom operations are on",
                  "This TensorFlow binary is optimized to use available CPU instructions",
                  "To enable the following instructions")


def import_tensorflow():
    """Import TensorFlow without its start-up notices; any other line it writes to
    stderr while loading is passed on. A binary calls this once its flags are valid."""
    if "tensorflow" in sys.modules:
        return
    import tempfile
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in _STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def quiet_retracing_notices():
    import logging
    logging.getLogger("tensorflow").addFilter(_DropRetracingNotices())


def print_summary(results, tables=()):
    """A few lines on stdout: where the report is and the headline numbers (a worker
    other than the chief of a multi-worker run says only that it is done). `tables`:
    text blocks printed too (bin/eval_whitebox --attacks=standard: its summary)."""
    worker = results.get("distribution", {}).get("worker", 0)
    if worker:
        print(f"worker {worker}: done (the chief, worker 0, writes the report)")
        return
    for e in results.get("evaluations", []):  # a recap: each was also printed when it finished
        if e["filtered"]["count"]:
            print(formatting.result_line(e))
    for table in tables:
        print(table)
    for warning in results.get("warnings", []):
        print(f"warning: {warning}")
    written = "report.md" if "report.md" in results.get("files", ["report.md"]) else \
        "results.json"
    print(f"{written.split('.')[0]}: {results['run_dir']}/{written}")
