"""The image's entrypoint: run ``nnctl`` as the owner of ``/app/runs``, whoever that is.

``docker run -v "$PWD/runs:/app/runs" nnctl train ...`` mounts a host folder whose owner is the host
user (uid 1000 on a desktop, 1001 on a CI runner, 0 after ``mkdir -p runs`` as root). Started as root
(the image's default), this switches to that folder's uid and gid before nnctl runs, so nnctl can
write there and every file it writes belongs to the folder's owner on the host, with no extra flag.
A folder that belongs to root keeps nnctl running as root: root's files in root's folder. Started as
another user (``docker run --user``), it changes nothing. No mount: the image's own ``/app/runs``
belongs to uid 1000, so nnctl runs unprivileged.

The switch is the standard library's ``setgroups``/``setgid``/``setuid`` (what ``setpriv`` or ``gosu``
do): nothing to install, and dropping root this way cannot be undone by the process. Then ``exec``, so
nnctl is PID 1 and receives ``docker stop``'s SIGTERM itself.
"""

import os
import sys

RUNS = "/app/runs"
NNCTL = "/opt/nnctl/bin/nnctl"


def main() -> None:
    if os.getuid() == 0:
        try:
            owner = os.stat(RUNS)
        except OSError:
            owner = None
        if owner is not None and owner.st_uid != 0:
            os.setgroups([])
            os.setgid(owner.st_gid)
            os.setuid(owner.st_uid)
            os.environ["HOME"] = "/tmp"  # the folder's owner need not exist in the image
            os.environ.pop("USER", None)
    os.execv(NNCTL, [NNCTL, *sys.argv[1:]])


if __name__ == "__main__":
    main()
