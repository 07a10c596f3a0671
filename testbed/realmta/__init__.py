"""Real mail servers from Debian 12 (Postfix, Exim) as hosts of the test world.

``install_real_mtas()`` installs them once (idempotent, cached); each
``PostfixInstance`` / ``EximInstance`` is a private daemon with its own
config, spool and log under a state dir, bound to one 127.x address.
"""

from testbed.realmta.exim import EximInstance
from testbed.realmta.install import InstallError, RealMtas, install_blocker, install_real_mtas
from testbed.realmta.postfix import PostfixInstance

__all__ = [
    "EximInstance",
    "InstallError",
    "PostfixInstance",
    "RealMtas",
    "install_blocker",
    "install_real_mtas",
]
