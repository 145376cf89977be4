"""Install a workflow profile where Snakemake looks for profiles given by name.

``snakemake --profile slurm`` looks for a folder ``slurm`` in the current directory, then in the
user's config folder (``$XDG_CONFIG_HOME/snakemake``, default ``~/.config/snakemake``), then in
``/etc/xdg/snakemake``. ``make install-profile`` (this module) links ``profiles/slurm`` there, so
the command works as users type it; ``--profile profiles/slurm`` keeps working.

It never clobbers: an existing ``slurm`` profile that is not this one (another link, a folder, a
file) is left alone and the command fails saying how to proceed (``--name`` installs under another
name). Run again, it finds its own link and does nothing. Standard library only (runs with any
Python 3).

    PYTHONPATH=scripts python3 -m hcsflow.cluster.install [--profile profiles/slurm] [--name slurm] [--copy]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ProfileError(RuntimeError):
    """The profile cannot be installed without clobbering something; the message says what to do."""


def user_profile_dir(env: dict | None = None) -> Path:
    """Snakemake's user profile folder (platformdirs' user config dir for ``snakemake``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "snakemake"


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def install(source: Path, dest_dir: Path, name: str | None = None, copy: bool = False) -> str:
    """Link (or copy) the profile folder ``source`` to ``dest_dir/name``; return what was done."""
    source = Path(source).resolve()
    if not (source / "config.yaml").is_file():
        raise ProfileError(f"{source} is not a Snakemake profile (no config.yaml)")
    target = Path(dest_dir) / (name or source.name)
    if target.is_symlink() or target.exists():
        if target.is_symlink() and Path(os.path.realpath(target)) == source:
            return f"{target} already links to {source}; nothing to do"
        if copy and target.is_dir() and not target.is_symlink() and _same_tree(source, target):
            return f"{target} is already a copy of {source}; nothing to do"
        what = (
            f"a link to {os.readlink(target)}"
            if target.is_symlink()
            else ("a folder" if target.is_dir() else "a file")
        )
        raise ProfileError(
            f"{target} exists and is {what}, not this workflow's profile; it was left alone. "
            f"Install under another name (make install-profile PROFILE_NAME=hcsflow-slurm, then "
            f"snakemake --profile hcsflow-slurm), or move {target} away and run again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(source, target)
        return f"copied {source} to {target}"
    os.symlink(source, target, target_is_directory=True)
    return f"linked {target} -> {source}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=str(REPO / "profiles" / "slurm"), help="profile folder")
    ap.add_argument(
        "--name", default=None, help="name to install it under (default: its folder name)"
    )
    ap.add_argument("--dest", default=None, help="where (default: Snakemake's user profile folder)")
    ap.add_argument("--copy", action="store_true", help="copy instead of linking")
    args = ap.parse_args(argv)
    dest = Path(args.dest) if args.dest else user_profile_dir()
    try:
        print(install(Path(args.profile), dest, args.name, args.copy))
    except ProfileError as exc:
        print(f"install-profile: {exc}", file=sys.stderr)
        return 1
    name = args.name or Path(args.profile).name
    print(f"now: snakemake --profile {name} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
