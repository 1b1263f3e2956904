"""The files a bigger Debian root filesystem adds to a smaller one, as a layer folder.

    python3 images/delta.py BASE_ROOTFS FULL_ROOTFS OUT_DIR

scripts/images.sh builds the platform image's Node.js layer this way: FULL is mmdebstrap of the same
suite with the base packages *and* nodejs; what FULL has that BASE lacks or has with other contents
(nodejs and its libraries, dpkg's status and info files, ld.so.cache) is copied to OUT_DIR, keeping
modes, owners and times, and becomes a layer on top of the job image's layers. So the job image's
three layers are shared (one copy in containerd) and only the difference is new.

The account files (/etc/passwd, group, shadow, gshadow) are never copied: the environment layer
added the user jovyan to them, and copying the base's would remove it; they must not differ (an
added package that creates an account is an error here, not a silent loss; other contents with the same
account names, such as a date in shadow, are ignored). Files FULL removed are
reported, not whited out (adding packages removes nothing).
"""
from __future__ import annotations

import filecmp
import os
import shutil
import stat
import sys

SKIP_CONTENTS = {"dev", "proc", "sys", "run", "tmp"}
ACCOUNTS = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}


def _same(a: str, b: str, sa: os.stat_result) -> bool:
    try:
        sb = os.lstat(b)
    except FileNotFoundError:
        return False
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode) or sa.st_mode != sb.st_mode:
        return False
    if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return os.readlink(a) == os.readlink(b)
    if stat.S_ISREG(sa.st_mode):
        return sa.st_size == sb.st_size and filecmp.cmp(a, b, shallow=False)
    return True  # a folder (its contents are compared one by one), a device node


def delta(base: str, full: str, out: str) -> tuple[int, list[str]]:
    copied, removed = 0, []
    for dirpath, dirnames, filenames in os.walk(full):
        rel_dir = os.path.relpath(dirpath, full)
        rel_dir = "" if rel_dir == "." else rel_dir
        if rel_dir and rel_dir.split(os.sep)[0] in SKIP_CONTENTS:
            dirnames[:] = []
            continue
        for name in sorted(dirnames + filenames):
            rel = os.path.join(rel_dir, name)
            src, old = os.path.join(full, rel), os.path.join(base, rel)
            st = os.lstat(src)
            if _same(src, old, st):
                continue
            if rel in ACCOUNTS:
                if _names(src) != _names(old):
                    raise SystemExit(f"delta.py: {rel} has other accounts in {full} than in {base}: an added "
                                     "package creates one; add it to the base layer instead")
                continue  # same accounts (a date field may differ): keep the lower layer's, with jovyan
            if stat.S_ISDIR(st.st_mode) and os.path.isdir(old) and not os.path.islink(old):
                continue  # same folder, other mode or owner: leave the lower one
            dest = os.path.join(out, rel)
            _parents(full, out, rel_dir)
            if stat.S_ISDIR(st.st_mode):
                os.makedirs(dest, exist_ok=True)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dest)
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(src, dest, follow_symlinks=False)
            else:
                continue  # devices, sockets and pipes do not belong in a layer
            os.lchown(dest, st.st_uid, st.st_gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dest, stat.S_IMODE(st.st_mode))
                os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
            copied += 1
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base)
        if rel_dir != "." and rel_dir.split(os.sep)[0] in SKIP_CONTENTS:
            dirnames[:] = []
            continue
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not os.path.lexists(os.path.join(full, rel)):
                removed.append(rel)
    return copied, removed


def _names(path: str) -> set[str]:
    try:
        with open(path) as f:
            return {line.split(":", 1)[0] for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def _parents(full: str, out: str, rel_dir: str) -> None:
    """Create OUT's parent folders of a copied entry with FULL's modes and owners."""
    if not rel_dir:
        os.makedirs(out, exist_ok=True)
        return
    path = out
    for part in rel_dir.split(os.sep):
        path = os.path.join(path, part)
        if not os.path.isdir(path):
            st = os.lstat(os.path.join(full, os.path.relpath(path, out)))
            os.mkdir(path)
            os.lchown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    base, full, out = argv
    os.makedirs(out, exist_ok=True)
    copied, removed = delta(base, full, out)
    print(f"delta.py: {copied} entries added or changed", file=sys.stderr)
    if removed:
        print(f"delta.py: {len(removed)} base files absent from the full tree (kept): {removed[:5]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
