"""``python -m ducksnap ARGS``: runs the ``ducksnap`` command that came with
this package (see :func:`ducksnap.find_binary`), e.g. ``python -m ducksnap
demo``."""

import os
import sys

from . import find_binary


def main() -> None:
    exe = find_binary()
    if exe is None:
        sys.exit(
            "ducksnap: the ducksnap command is not installed here (this is the "
            "client-only package); install the `ducksnap` wheel, or build it: "
            "cargo install --path <ducksnap checkout>"
        )
    os.execv(exe, [exe, *sys.argv[1:]])


if __name__ == "__main__":
    main()
