"""Fingerprint the weights every shipped config trains to, through the real `nnctl train` command.

A refactor that must not change behaviour is checked by running this before and after:

    python benchmarks/fingerprint.py > before.json   # on the old tree
    python benchmarks/fingerprint.py --compare before.json   # on the new one: exit 1 on any change

Each config trains with `--deterministic` (BLAS pinned to one thread) into a temporary folder;
the fingerprint is the SHA-256 of every W and b array of `last.npz`, bytes and shape included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def weights_digest(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    with np.load(checkpoint, allow_pickle=False) as archive:
        for key in sorted(k for k in archive.files if k[0] in "Wb" and k[1:].isdigit()):
            array = archive[key]
            digest.update(f"{key}{array.shape}{array.dtype}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def fingerprint(config: Path, folder: Path) -> str:
    out = folder / config.stem
    command = [str(Path(sys.executable).parent / "nnctl"), "train", str(config), "--out", str(out), "--quiet"]
    subprocess.run([*command, "--deterministic"], check=True, cwd=ROOT)
    return weights_digest(out / "last.npz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="a JSON file written by an earlier run")
    args = parser.parse_args()
    configs = sorted((ROOT / "configs").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        prints = {c.name: fingerprint(c, Path(tmp)) for c in configs}
    if args.compare is None:
        print(json.dumps(prints, indent=2))
        return 0
    before = json.loads(args.compare.read_text())
    changed = [name for name in sorted(set(before) | set(prints)) if before.get(name) != prints.get(name)]
    for name in changed:
        print(f"CHANGED {name}: {before.get(name)} -> {prints.get(name)}")
    print(f"{len(prints) - len(changed)} of {len(prints)} configs train to bit-identical weights")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
