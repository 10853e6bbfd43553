"""The sandbox's base image and its local, signed apt repository.

Both are built once and cached under the user's cache directory, keyed by a hash of the
recipe below, so a warm `sandbox up` takes seconds. The image is a Debian trixie minbase
root filesystem with systemd, sshd and python3 but without HTCondor: the roles install
HTCondor from the repository, exactly as they would from the official one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import SandboxError

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
RECIPE_VERSION = 3
# What an EC2 image of Debian would carry; python3-apt lets Ansible's apt module work.
IMAGE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "openssh-server", "openssh-sftp-server", "python3",
    "python3-apt", "sudo", "iproute2", "ca-certificates", "procps", "less",
]


def _autoscaler_debian_packages() -> list[str]:
    """The "# debian: <package>" names of requirements/autoscaler.txt ("-": none), in order."""
    path = Path(__file__).resolve().parents[2] / "requirements" / "autoscaler.txt"
    if not path.is_file():
        raise SandboxError(f"{path} is missing: the sandbox runs from a checkout of htcpool")
    lines = [s for s in path.read_text().splitlines() if s.strip() and not s.startswith("#")]
    return [n for n in (s.partition("# debian:")[2].strip() for s in lines) if n not in ("", "-")]


# What the local repository offers: HTCondor, what the roles need on hosts (the first-boot
# unit, the worker's metadata guard), and the run-time dependencies of htcpool itself (the
# master role's autoscaler service).
REPO_PACKAGES = ["condor", "python3-debian", "gnupg", "python3-venv", "nftables",
                 *_autoscaler_debian_packages()]
KEY_FILE = "htcpool-sandbox.asc"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    key: str
    rootfs: Path
    repo: Path

    @property
    def repo_key(self) -> Path:
        return self.repo / KEY_FILE


def recipe_key() -> str:
    recipe = {
        "v": RECIPE_VERSION, "suite": SUITE, "mirror": MIRROR,
        "image": IMAGE_PACKAGES, "repo": REPO_PACKAGES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SandboxError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc  # type: ignore[no-any-return]


def ensure_base_image(cache_dir: Path, progress: Progress = print) -> BaseImage:
    """Return the cached image for the current recipe, building it if needed."""
    key = recipe_key()
    root = cache_dir / "images" / key
    image = BaseImage(key=key, rootfs=root / "rootfs", repo=root / "repo")
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up`s must not build the same image twice
        if (root / "complete").exists():
            return image
        for tool in ("debootstrap", "apt-ftparchive", "gpg"):
            if shutil.which(tool) is None:
                raise SandboxError(f"{tool} is not installed (run `make deps` as root)")
        progress(f"building the base image {key} (debootstrap {SUITE}; a few minutes, once)")
        build = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=root.parent))
        try:
            _debootstrap(build / "rootfs", progress)
            _build_repo(build / "rootfs", build / "repo", progress)
            _clean_image(build / "rootfs")
            if root.exists():
                shutil.rmtree(root)
            build.rename(root)
            (root / "complete").write_text(key + "\n")
        finally:
            if build.exists():
                _unmount_below(build)
                shutil.rmtree(build, ignore_errors=True)
    progress(f"base image {key} ready")
    return image


def _debootstrap(rootfs: Path, progress: Progress) -> None:
    progress("  debootstrap --variant=minbase " + SUITE)
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}",
          SUITE, str(rootfs), MIRROR], "debootstrap")


def _build_repo(rootfs: Path, repo: Path, progress: Progress) -> None:
    """Download REPO_PACKAGES and the dependencies the image lacks; index and sign them."""
    progress("  downloading " + " ".join(REPO_PACKAGES) + " and their dependencies")
    archives = rootfs / "tmp" / "htcpool-archives"
    (archives / "partial").mkdir(parents=True)
    _run(["chroot", str(rootfs), "apt-get", "update", "-qq"], "apt-get update (image)")
    _run(["chroot", str(rootfs), "apt-get", "install", "--download-only", "-y", "-qq",
          "-o", "Dir::Cache::archives=/tmp/htcpool-archives", *REPO_PACKAGES],
         "apt-get install --download-only")
    pool = repo / "pool" / "main"
    pool.mkdir(parents=True)
    for deb in archives.glob("*.deb"):
        shutil.move(str(deb), pool / deb.name)
    shutil.rmtree(archives)
    progress(f"  indexing and signing the repository ({len(list(pool.iterdir()))} packages)")
    dist = repo / "dists" / SUITE
    binary = dist / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    packages = _run(["apt-ftparchive", "packages", "pool"], "apt-ftparchive packages",
                    cwd=repo).stdout
    (binary / "Packages").write_text(packages)
    _run(["gzip", "-k9", str(binary / "Packages")], "gzip Packages")
    release = _run(["apt-ftparchive",
                    "-o", f"APT::FTPArchive::Release::Suite={SUITE}",
                    "-o", f"APT::FTPArchive::Release::Codename={SUITE}",
                    "-o", "APT::FTPArchive::Release::Components=main",
                    "-o", "APT::FTPArchive::Release::Architectures=amd64",
                    "-o", "APT::FTPArchive::Release::Origin=htcpool-sandbox",
                    "release", "."], "apt-ftparchive release", cwd=dist).stdout
    (dist / "Release").write_text(release)
    _sign(repo, dist)


def _sign(repo: Path, dist: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="htcpool-gpg-") as home:
        gpg = ["gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback",
               "--passphrase", ""]
        _run([*gpg, "--quick-gen-key", "htcpool sandbox repository <sandbox@htcpool.invalid>",
              "ed25519", "sign", "never"], "gpg key generation")
        _run([*gpg, "--clearsign", "--digest-algo", "SHA512", "-o", str(dist / "InRelease"),
              str(dist / "Release")], "gpg clearsign")
        _run([*gpg, "-abs", "--digest-algo", "SHA512", "-o", str(dist / "Release.gpg"),
              str(dist / "Release")], "gpg detach-sign")
        key = _run([*gpg, "--armor", "--export"], "gpg export").stdout
        (repo / KEY_FILE).write_text(key)


def _clean_image(rootfs: Path) -> None:
    """Leave nothing instance-specific or outward-pointing in the image."""
    for rel in ("etc/apt/sources.list", "etc/apt/sources.list.d/debian.sources"):
        (rootfs / rel).unlink(missing_ok=True)
    for pattern in ("var/lib/apt/lists/*_*", "var/cache/apt/*.bin",
                    "var/cache/apt/archives/*.deb", "etc/ssh/ssh_host_*"):
        for path in rootfs.glob(pattern):
            path.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    # Hosts resolve every name from /etc/hosts: DNS would only time out in the sandbox.
    (rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)
    (rootfs / "etc" / "resolv.conf").write_text("")


def _unmount_below(path: Path) -> None:
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts]
    for target in sorted(targets, reverse=True):
        if target.startswith(str(path) + "/"):
            subprocess.run(["umount", "-l", target], check=False)
