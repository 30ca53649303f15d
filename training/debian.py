"""Data shipped by Debian packages, fetched with `apt-get download` (no root, nothing installed on the system) and
unpacked with `dpkg-deb` into a cache folder (`CT_DEBIAN_CACHE`, default ~/.cache/custom_transformer/debian)."""

import os
import shutil
import subprocess
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("CT_DEBIAN_CACHE", Path.home() / ".cache" / "custom_transformer" / "debian"))


def unpacked(package: str, marker: Path, cache: Path | None = None) -> Path:
    """The root the package unpacks to, fetched on first use; `marker` (relative to it) says it is complete."""
    root = (cache or cache_dir()) / package
    if (root / marker).exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError(
            f"Fetching {package} needs apt-get and dpkg-deb (Debian or Ubuntu). Elsewhere, unpack the package "
            f"yourself so that {root / marker} exists."
        )
    download = root.parent / f".{package}-download"
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    fetched = subprocess.run(["apt-get", "download", package], cwd=download, capture_output=True, text=True)
    debs = sorted(download.glob(f"{package}_*.deb"))
    if fetched.returncode != 0 or not debs:
        raise RuntimeError(
            f"`apt-get download {package}` failed ({fetched.stderr.strip()[-500:]}): run `apt-get update` first, "
            "or check that the machine can reach a Debian mirror."
        )
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(download / "unpacked")], check=True)
    shutil.rmtree(root, ignore_errors=True)
    (download / "unpacked").rename(root)  # complete, or not there: a killed fetch starts again
    shutil.rmtree(download, ignore_errors=True)
    return root
