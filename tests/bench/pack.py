#!/usr/bin/env python3
"""Packs a boot bundle when `fvconfig` is not built: the config as
`ferrovisor.toml` first, then every file the config names (each VM's kernel,
initrd and dtb), stored under the path exactly as the config writes it, in a
cpio "newc" archive (the format src/config/bundle.rs reads).

    pack.py CONFIG -o OUT -L DIR

Paths are looked up next to CONFIG first, then in DIR (as `fvconfig pack -L`).
This checks nothing beyond "the file exists"; `fvconfig pack` is the real tool.
Standard library only (tomllib needs Python >= 3.11).
"""

import argparse
import os
import sys
import tomllib


def newc_member(name: str, data: bytes, ino: int) -> bytes:
    """One newc member: 110-byte ASCII header, NUL-terminated name, data,
    each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    mode = 0o100644 if name != "TRAILER!!!" else 0
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(b"%08x" % f for f in fields)
    out = header + encoded
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def referenced_files(config: dict) -> list[str]:
    files = []
    for vm in config.get("vm", []):
        for key in ("kernel", "initrd", "dtb"):
            value = vm.get(key)
            if isinstance(value, dict):
                value = value.get("path")
            if isinstance(value, str) and value not in files:
                files.append(value)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("-o", dest="out", required=True)
    ap.add_argument("-L", dest="libdir", default=".")
    args = ap.parse_args()

    with open(args.config, "rb") as f:
        raw = f.read()
    config = tomllib.loads(raw.decode())
    members = [("ferrovisor.toml", raw)]
    here = os.path.dirname(os.path.abspath(args.config))
    for path in referenced_files(config):
        for base in (here, args.libdir):
            candidate = os.path.join(base, path)
            if os.path.isfile(candidate):
                with open(candidate, "rb") as f:
                    members.append((path, f.read()))
                break
        else:
            print(f"pack.py: {args.config}: '{path}' not found next to the config "
                  f"or in {args.libdir}", file=sys.stderr)
            return 1

    blob = b"".join(newc_member(n, d, i + 1) for i, (n, d) in enumerate(members))
    blob += newc_member("TRAILER!!!", b"", 0)
    with open(args.out, "wb") as f:
        f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
