"""python -m cockpit_lab build [VARIANT...] | demo [--variant V] [--keep]."""

from __future__ import annotations

import sys

from cockpit_lab import build, demo


def main(argv: list[str]) -> int:
    """Dispatch the lab's subcommands."""
    commands = {"build": build.main, "demo": demo.main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m cockpit_lab {{{','.join(commands)}}} [ARGS]", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
