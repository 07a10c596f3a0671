"""Run a command inside a private network namespace whose only interface is loopback.

Ray binds to (and advertises) the machine's interface address, which a test must never
send to.  ``unshare -n`` gives a process a network namespace of its own; there ``lo`` is
down until ``ip link set lo up``, and then 127.0.0.0/8 is the only network: every Ray node,
the test world and the scanner are on it, and nothing can leave the machine.

    unshare -n -- python tests/cluster/netns.py COMMAND...

brings ``lo`` up, then replaces itself with COMMAND (so COMMAND's exit code and signals are
the caller's).  ``inside()`` tells a test whether it already runs in such a namespace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

#: Set in the environment of everything run through this helper.
MARK = "MXSCAN_TEST_NETNS"


def only_loopback() -> bool:
    """Whether this process's network namespace has no interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def inside() -> bool:
    """Run through this helper, and the namespace really is loopback-only."""
    return os.environ.get(MARK) == "1" and only_loopback()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: unshare -n -- python tests/cluster/netns.py COMMAND...", file=sys.stderr)
        return 2
    if not only_loopback():
        print("netns.py: not in a private network namespace (run it under unshare -n)", file=sys.stderr)
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ[MARK] = "1"
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
