"""Pack root-filesystem folders into an image archive without any registry or daemon.

    python3 images/pack.py --out job.tar --name aistack.local/aistack-job:TAG \
        --layer base/rootfs --layer job/upper --user 1000:100 --env PATH=... --cmd '["python3"]'

Each ``--layer`` folder becomes one uncompressed layer (an overlayfs upper folder works: its
whiteouts, character devices 0/0, become OCI ``.wh.`` files, opaque folders ``.wh..wh..opq``).
The archive holds both an OCI image layout (oci-layout, index.json, blobs/sha256/...) and Docker's
manifest.json over the same blobs, the format ``docker save`` writes since Docker 25: it loads with
``ctr -n k8s.io images import``, ``docker load``, ``podman load`` and ``skopeo copy oci-archive:``.

Reproducible: entries sorted by name, owners numeric, times clamped to $SOURCE_DATE_EPOCH.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile

# Runtime-provided folders: their contents never belong in an image.
SKIP_CONTENTS = {"dev", "proc", "sys", "run", "tmp"}
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class HashingWriter(io.RawIOBase):
    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.f.write(b)
        self.sha.update(b)
        self.size += len(b)
        return len(b)


def _walk(root: str):
    """Every path under root (relative, sorted, parents first), skipping runtime folders' contents."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        if rel.split(os.sep)[0] in SKIP_CONTENTS and rel:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            out.append(os.path.join(rel, name))
        # os.walk does not descend into symlinked folders: they are listed as names above.
    return sorted(out)


def write_layer(root: str, dest, epoch: int) -> tuple[str, int]:
    """Write root's tree as a tar to dest; returns (sha256 hex, size)."""
    hw = HashingWriter(dest)
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(root):
            path = os.path.join(root, rel)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlayfs whiteout
                info = tarfile.TarInfo(os.path.join(os.path.dirname(rel), ".wh." + os.path.basename(rel)))
                info.mtime = min(int(st.st_mtime), epoch)
                tar.addfile(info)
                continue
            if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                continue
            info = tar.gettarinfo(path, arcname=rel)
            info.uname = info.gname = ""
            info.mtime = min(int(info.mtime), epoch)
            info.pax_headers = {}
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                try:
                    opaque = os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False)
                except OSError:
                    opaque = b""
                if opaque == b"y":
                    wh = tarfile.TarInfo(os.path.join(rel, ".wh..wh..opq"))
                    wh.mtime = info.mtime
                    tar.addfile(wh)
    return hw.sha.hexdigest(), hw.size


def pack(out: str, name: str, layers: list[str], config: dict, epoch: int) -> str:
    """Write the archive; returns the manifest digest."""
    workdir = tempfile.mkdtemp(prefix="pack-", dir=os.path.dirname(os.path.abspath(out)))
    blobs = []  # (digest, path)
    layer_descs = []
    try:
        for i, root in enumerate(layers):
            if os.path.isfile(root):  # a layer tar written before (``--layer-only``): reused as it is
                sha = hashlib.sha256()
                with open(root, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        sha.update(chunk)
                digest, size = sha.hexdigest(), os.path.getsize(root)
                blobs.append((digest, root))
                layer_descs.append({"mediaType": OCI_LAYER, "digest": f"sha256:{digest}", "size": size})
                continue
            tmp = os.path.join(workdir, f"layer{i}")
            with open(tmp, "wb") as f:
                digest, size = write_layer(root, f, epoch)
            blobs.append((digest, tmp))
            layer_descs.append({"mediaType": OCI_LAYER, "digest": f"sha256:{digest}", "size": size})
        created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
        image_config = {
            "architecture": "amd64", "os": "linux", "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
            "history": [{"created": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "created_by": f"images/pack.py {os.path.basename(r)}"}
                        for r in layers],
        }
        cfg_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
        cfg_digest = hashlib.sha256(cfg_bytes).hexdigest()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": f"sha256:{cfg_digest}", "size": len(cfg_bytes)},
                    "layers": layer_descs}
        man_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        man_digest = hashlib.sha256(man_bytes).hexdigest()
        repo, _, tag = name.rpartition(":")
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [{"mediaType": OCI_MANIFEST, "digest": f"sha256:{man_digest}", "size": len(man_bytes),
                                "annotations": {"io.containerd.image.name": name,
                                                "org.opencontainers.image.ref.name": tag}}]}
        docker_manifest = [{"Config": f"blobs/sha256/{cfg_digest}", "RepoTags": [name],
                            "Layers": [f"blobs/sha256/{d['digest'][7:]}" for d in layer_descs]}]
        small = {
            "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
            "index.json": json.dumps(index, sort_keys=True).encode(),
            "manifest.json": json.dumps(docker_manifest).encode(),
            f"blobs/sha256/{cfg_digest}": cfg_bytes,
            f"blobs/sha256/{man_digest}": man_bytes,
        }
        tmp_out = out + ".tmp"
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
                tar.addfile(info)
            for arcname, data in small.items():
                info = tarfile.TarInfo(arcname)
                info.size, info.mode, info.mtime = len(data), 0o644, epoch
                tar.addfile(info, io.BytesIO(data))
            for digest, path in blobs:
                info = tar.gettarinfo(path, arcname=f"blobs/sha256/{digest}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode, info.mtime = 0o644, epoch
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        os.replace(tmp_out, out)
        return f"sha256:{man_digest}"
    finally:
        for _, path in blobs:
            if not path.startswith(workdir + os.sep):
                continue
            try:
                os.unlink(path)
            except OSError:
                pass
        os.rmdir(workdir)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--name", help="image reference, e.g. aistack.local/aistack-job:0.1.0-abc")
    p.add_argument("--layer", action="append", required=True,
                   help="a folder, or a layer tar written by --layer-only: one layer (bottom first)")
    p.add_argument("--layer-only", action="store_true", help="write the one --layer folder as a layer tar to --out")
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--entrypoint", default="", help="JSON list")
    p.add_argument("--cmd", default="", help="JSON list")
    p.add_argument("--label", action="append", default=[], help="key=value")
    args = p.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    if args.layer_only:
        with open(args.out + ".tmp", "wb") as f:
            write_layer(args.layer[0], f, epoch)
        os.replace(args.out + ".tmp", args.out)
        return 0
    if not args.name:
        p.error("--name is required")
    config = {"Env": args.env}
    if args.user:
        config["User"] = args.user
    if args.workdir:
        config["WorkingDir"] = args.workdir
    if args.entrypoint:
        config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        config["Cmd"] = json.loads(args.cmd)
    if args.label:
        config["Labels"] = dict(item.split("=", 1) for item in args.label)
    digest = pack(args.out, args.name, args.layer, config, epoch)
    print(f"{args.name} {digest} {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
