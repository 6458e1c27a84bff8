"""What `pip install .` puts on an admin's machine: the product, never the dev/test harness.

The harness (devenv/: private Postgres and Asterisk, sipp phones, the cluster) lives beside
the package for `make run`, the tests and the benchmarks; it must not ship (issue 17).
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_built_wheel_holds_no_devenv_module(tmp_path: Path) -> None:
    # A copy of what the build reads, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    for name in ("ari_app", "cli", "devenv"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # --no-build-isolation: setuptools from the venv, nothing downloaded.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("hotline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("ari_app/flows/") for n in names)
    assert any(n.startswith("hotline_cli/") for n in names)
    assert not [n for n in names if "devenv" in n]
    # setup.cfg lists the packages by hand: a new subpackage left out would be missing on
    # an admin's machine and in the docker image while every test from the checkout passes.
    for init in (REPO / "ari_app").rglob("__init__.py"):
        assert init.relative_to(REPO).as_posix() in names
