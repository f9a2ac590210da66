#!/usr/bin/env python3
"""Build a one-layer OCI image layout archive (a tar) from a root filesystem.

Python 3 standard library only. The output is reproducible: entries are
sorted, every mtime is fixed, user and group names are dropped (numeric
ids only) and gzip carries no name or timestamp, so the same rootfs always
gives the same digests.

Archive layout (OCI image-layout 1.0.0):

    oci-layout
    index.json                 one manifest descriptor, annotated with
                               org.opencontainers.image.ref.name (the tag)
                               and io.containerd.image.name (the full name)
    blobs/sha256/<manifest>    application/vnd.oci.image.manifest.v1+json
    blobs/sha256/<config>      application/vnd.oci.image.config.v1+json
    blobs/sha256/<layer>       application/vnd.oci.image.layer.v1.tar+gzip

Usage:
    mkimage.py --rootfs DIR --name localhost/busybox:latest \
               [--cmd JSON] [--entrypoint JSON] [--env K=V ...] \
               [--workdir DIR] [--user USER] --output FILE.tar
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tarfile
import tempfile

# 2024-01-01T00:00:00Z, used for every timestamp unless SOURCE_DATE_EPOCH is set.
DEFAULT_EPOCH = 1704067200

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def fail(msg):
    print(f"mkimage: error: {msg}", file=sys.stderr)
    sys.exit(1)


def rootfs_entries(root):
    """Paths under root, relative, sorted by components: parents first."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: fail(str(e))):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            entries.append(name if rel_dir == "." else f"{rel_dir}/{name}")
    return sorted(entries, key=lambda p: p.split("/"))


def build_layer(rootfs, mtime):
    """Return the uncompressed layer tar as bytes."""
    buf = io.BytesIO()
    seen_inodes = {}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in rootfs_entries(rootfs):
            full = os.path.join(rootfs, rel)
            st = os.lstat(full)
            info = tarfile.TarInfo(rel)
            info.mtime = mtime
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = st.st_uid
            info.gid = st.st_gid
            info.uname = ""
            info.gname = ""
            data = None
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[key]
                else:
                    if st.st_nlink > 1:
                        seen_inodes[key] = rel
                    info.type = tarfile.REGTYPE
                    info.size = st.st_size
                    data = full
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor = os.major(st.st_rdev)
                info.devminor = os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                fail(f"unsupported file type: {full}")
            if data is None:
                tar.addfile(info)
            else:
                with open(data, "rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def gzip_bytes(raw):
    out = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of varying data.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    return out.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def split_name(name):
    """Return (full name, tag) for e.g. localhost/busybox:latest."""
    last = name.rsplit("/", 1)[-1]
    if "@" in last:
        fail(f"image name must use a tag, not a digest: {name}")
    if ":" in last:
        tag = last.rsplit(":", 1)[1]
    else:
        tag = "latest"
        name = f"{name}:{tag}"
    return name, tag


def parse_json_list(value, what):
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        fail(f"{what} is not JSON: {err}")
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        fail(f"{what} must be a JSON list of strings, got {value!r}")
    return parsed


def main():
    parser = argparse.ArgumentParser(description="Build a one-layer OCI image archive from a rootfs.")
    parser.add_argument("--rootfs", required=True, help="root filesystem folder")
    parser.add_argument("--name", required=True, help="full image name, e.g. localhost/busybox:latest")
    parser.add_argument("--output", required=True, help="archive to write (a tar of an OCI layout)")
    parser.add_argument("--cmd", help='JSON list, e.g. ["sh"]')
    parser.add_argument("--entrypoint", help='JSON list, e.g. ["/pause"]')
    parser.add_argument("--env", action="append", default=[], help="K=V (repeatable)")
    parser.add_argument("--workdir", default="/", help="working directory (default /)")
    parser.add_argument("--user", default="", help="user to run as (default: image default, root)")
    args = parser.parse_args()

    if not os.path.isdir(args.rootfs):
        fail(f"rootfs {args.rootfs} is not a folder")
    for kv in args.env:
        if "=" not in kv:
            fail(f"--env needs K=V, got {kv!r}")

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    full_name, tag = split_name(args.name)
    arch = GO_ARCH.get(platform.machine())
    if arch is None:
        fail(f"unknown machine architecture {platform.machine()!r}")

    layer_tar = build_layer(args.rootfs, epoch)
    layer_gz = gzip_bytes(layer_tar)

    image_config = {"WorkingDir": args.workdir}
    if args.env:
        image_config["Env"] = args.env
    cmd = parse_json_list(args.cmd, "--cmd")
    entrypoint = parse_json_list(args.entrypoint, "--entrypoint")
    if cmd is not None:
        image_config["Cmd"] = cmd
    if entrypoint is not None:
        image_config["Entrypoint"] = entrypoint
    if args.user:
        image_config["User"] = args.user

    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": created, "created_by": "peapod scripts/lib/mkimage.py"}],
    }
    config_blob = canonical_json(config)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": MT_LAYER_GZIP, "digest": sha256(layer_gz), "size": len(layer_gz)}],
    }
    manifest_blob = canonical_json(manifest)

    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": sha256(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": full_name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    index_blob = canonical_json(index)
    layout_blob = canonical_json({"imageLayoutVersion": "1.0.0"})

    files = [
        ("oci-layout", layout_blob),
        ("index.json", index_blob),
    ]
    blobs = {}
    for blob in (manifest_blob, config_blob, layer_gz):
        blobs[sha256(blob).split(":", 1)[1]] = blob

    out_dir = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mkimage-", suffix=".tar", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            def add_dir(path):
                info = tarfile.TarInfo(path)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = epoch
                tar.addfile(info)

            def add_file(path, data):
                info = tarfile.TarInfo(path)
                info.size = len(data)
                info.mode = 0o644
                info.mtime = epoch
                tar.addfile(info, io.BytesIO(data))

            for path, data in files:
                add_file(path, data)
            add_dir("blobs")
            add_dir("blobs/sha256")
            for hexdigest in sorted(blobs):
                add_file(f"blobs/sha256/{hexdigest}", blobs[hexdigest])
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.output)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

    print(f"mkimage: {args.output}: {full_name} manifest {sha256(manifest_blob)} "
          f"layer {len(layer_gz)} bytes")


if __name__ == "__main__":
    main()
