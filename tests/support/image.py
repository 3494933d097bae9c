"""Build the Dockerfile's image for real and run its commands as the image would.

No container engine runs on the machines this suite runs on, and no container registry may be
reachable. So the image is built with ``podman build --isolation chroot`` (which needs no
OCI runtime), on the official base when a registry gives it, else on a stand-in made from
Debian's packages with ``debootstrap`` under the base's name; and its commands run in a
chroot of a copy of the built image's root, as the image's user, in its working directory,
with its environment. The network is the host's, so the suite's services on loopback serve
it as they serve everything else.
"""

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

PULL_SECONDS = 120
DEBOOTSTRAP_SECONDS = 900
BUILD_SECONDS = 900
# What the stand-in holds of the official base: Python 3.11 with pip, as root's `python`
# and `pip`, installing into /usr/local like the base does.
STAND_IN_SUITE = "bookworm"  # Debian's release whose python3 is 3.11
STAND_IN_PACKAGES = "python3,python3-pip,python3-venv,ca-certificates,passwd"


def run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a build step; fail with its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{shlex.join(argv)} failed:\n{result.stdout[-3000:]}"
                             f"\n{result.stderr[-3000:]}")  # fmt: skip
    return result


def dockerfile_base() -> str:
    return next(
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    )


def ensure_base(work: Path) -> str:
    """Make the Dockerfile's base image available; return where it came from."""
    base = dockerfile_base()
    if subprocess.run(["podman", "image", "exists", base], timeout=30).returncode == 0:
        return "already present"
    try:
        pulled = subprocess.run(["podman", "pull", "--quiet", base], capture_output=True,
                                timeout=PULL_SECONDS).returncode == 0  # fmt: skip
    except subprocess.TimeoutExpired:
        pulled = False
    if pulled:
        return "pulled from its registry"
    rootfs = work / "stand-in"
    run(["debootstrap", "--variant=minbase", f"--include={STAND_IN_PACKAGES}", STAND_IN_SUITE,
         str(rootfs), "http://deb.debian.org/debian"], DEBOOTSTRAP_SECONDS)  # fmt: skip
    # This machine's trusted authorities (a proxy's, say) are the build's too.
    for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
        shutil.copy(certificate, rootfs / "usr/local/share/ca-certificates" / certificate.name)
    run(["chroot", str(rootfs), "sh", "-c",
         "update-ca-certificates >/dev/null && ln -sf python3 /usr/bin/python "
         "&& ln -sf pip3 /usr/bin/pip && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED "
         "&& apt-get clean && rm -rf /var/lib/apt/lists/*"], 120)  # fmt: skip
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        run(["podman", "import", "--change",
             "ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-", base], 300,
            stdin=tar.stdout)  # fmt: skip
    shutil.rmtree(rootfs)
    return f"a stand-in from Debian {STAND_IN_SUITE} (debootstrap)"


@dataclass
class Image:
    """The built image's root (a writable copy) and how its config says to run it."""

    root: Path
    user: str  # "uid:gid"
    workdir: str
    env: dict[str, str]
    cmd: list[str]

    def command(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """Return the command line that runs ``argv`` in the image as its user, with the
        image's environment and ``env`` over it."""
        variables = [f"{key}={value}" for key, value in (self.env | env).items()]
        return ["chroot", f"--userspec={self.user}", str(self.root), "/usr/bin/env", "-i",
                *variables, "sh", "-c", f"cd {shlex.quote(self.workdir)} && exec \"$@\"",
                "sh", *argv]  # fmt: skip


def build(tag: str, work: Path) -> tuple[Image, str]:
    """Build the image from this work tree; return it, unpacked under ``work``, and where its
    base came from."""
    origin = ensure_base(work)
    run(["podman", "build", "--isolation", "chroot", "--pull=never", "--tag", tag, str(ROOT)],
        BUILD_SECONDS)  # fmt: skip
    config = json.loads(run(["podman", "image", "inspect", tag], 60).stdout)[0]["Config"]
    mounted = run(["podman", "image", "mount", tag], 60).stdout.strip()
    root = work / "root"
    try:
        run(["cp", "-a", f"{mounted}/.", str(root)], 300)
    finally:
        subprocess.run(["podman", "image", "unmount", tag], capture_output=True, timeout=60)
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    image = Image(root, config["User"], config["WorkingDir"], env, config["Cmd"])
    return image, origin


def mount_system(root: Path) -> None:
    """Give the chroot /proc and /dev (with /dev/shm, which the worker's processes use)."""
    run(["mount", "-t", "proc", "proc", str(root / "proc")], 30)
    run(["mount", "--rbind", "/dev", str(root / "dev")], 30)
    run(["mount", "--make-rslave", str(root / "dev")], 30)


def unmount_system(root: Path) -> None:
    for path in (root / "dev", root / "proc"):
        subprocess.run(["umount", "-R", "-l", str(path)], capture_output=True, timeout=60)


def can_build() -> str | None:
    """Say why the image cannot be built here, or None if it can."""
    if os.geteuid() != 0:
        return "building and chrooting into the image needs root (CI runs as root)"
    missing = [tool for tool in ("podman", "debootstrap", "chroot") if not shutil.which(tool)]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install podman debootstrap"
    return None
