#!/usr/bin/env bash
# Build the Dockerfile and train a shipped config inside the container, then train the same config on
# the host and compare the two last.npz checkpoints bit for bit (W*/b*). The README's command runs as
# root on a root-owned runs/ folder (the tool's own run) and again on a folder owned by another uid
# (the files must belong to that uid); the README's serve example then answers /health and /predict.
#
#   .ci/container.sh [CONFIG]   # default: configs/digits.yaml (the README's example), else another
#                               # shipped config; with none shipped yet, only build and run --help
#   .ci/container.sh --relock   # regenerate constraints.txt (the lock) in a fresh virtual environment
#
# There is no Docker engine here: ../shared/tools/container-check.sh builds the image with rootful
# podman from a local stand-in for python:3.12-slim (Debian's python3) and runs it with $W/runs mounted
# at /app/runs. Where that tool, root or podman is unavailable, this prints "SKIPPED: ..." and exits 0;
# so does a failure of the tool's own environment steps (apt, debootstrap, the stand-in base). A failure
# to build or run OUR image, or different weights with identical library versions, exits 1.
# Environment: NNCTL_CONTAINER=skip (skip on purpose), CONTAINER_CHECK (the tool's path), W (its work
# dir, default /tmp/dockercheck/work), TAG (image tag, default localhost/nnctl:ci), NNCTL (host nnctl),
# OTHER_UID (the non-root uid:gid to test, default 1234:1234).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)

say() { printf '[container] %s\n' "$*"; }
skip() { say "SKIPPED: $*"; exit 0; }

# ------------------------------------------------------------------------------------ --relock
if [ "${1:-}" = "--relock" ]; then
  PY=${PYTHON:-python3}
  LOCKENV=$(mktemp -d /tmp/nnctl-lock.XXXXXX)
  trap 'rm -rf "$LOCKENV"' EXIT
  "$PY" -m venv "$LOCKENV"
  "$LOCKENV/bin/python" -m pip install --quiet --no-cache-dir "$ROOT"
  {
    sed -n '/^#/p;/^[^#]/q' constraints.txt   # keep the header comment
    "$LOCKENV/bin/python" -m pip freeze --exclude nnctl
  } > constraints.txt.new
  mv constraints.txt.new constraints.txt
  say "constraints.txt regenerated with $("$LOCKENV/bin/python" --version):"
  grep -v '^#' constraints.txt
  # The serve extra's lock: what '.[serve]' adds on top of the core lock.
  "$LOCKENV/bin/python" -m pip install --quiet --no-cache-dir -c constraints.txt "$ROOT[serve]"
  {
    sed -n '/^#/p;/^[^#]/q' constraints-serve.txt
    "$LOCKENV/bin/python" -m pip freeze --exclude nnctl | grep -vxF -f <(grep -v '^#' constraints.txt)
  } > constraints-serve.txt.new
  mv constraints-serve.txt.new constraints-serve.txt
  say "constraints-serve.txt regenerated:"
  grep -v '^#' constraints-serve.txt
  exit 0
fi

# ------------------------------------------------------------------------------------ preconditions
TOOL=${CONTAINER_CHECK:-$ROOT/../shared/tools/container-check.sh}
export W=${W:-/tmp/dockercheck/work}
export TAG=${TAG:-localhost/nnctl:ci}
[ "${NNCTL_CONTAINER:-}" = skip ] && skip "NNCTL_CONTAINER=skip"
[ -f "$TOOL" ] || skip "no container tool at $TOOL (it comes with the shared/ folder beside the repository)"
[ "$(id -u)" = 0 ] || skip "container-check.sh needs root (rootful podman); running as $(id -un)"
command -v apt-get >/dev/null || command -v podman >/dev/null || skip "neither podman nor apt-get here"
missing=()
for p in podman runc debootstrap; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (apt)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } \
       > /tmp/nnctl-container-apt.log 2>&1; then
    tail -5 /tmp/nnctl-container-apt.log
    skip "could not install ${missing[*]} with apt (log: /tmp/nnctl-container-apt.log)"
  fi
fi

# The host side: the nnctl of the active environment (CI activates its venv), else the repo's .venv.
NNCTL=${NNCTL:-$(command -v nnctl || true)}
[ -n "$NNCTL" ] || for c in "$ROOT/.ci-venv/bin/nnctl" "$ROOT/.venv/bin/nnctl"; do
  [ -x "$c" ] && { NNCTL=$c; break; }
done
[ -n "$NNCTL" ] || { say "FAIL: no host nnctl (activate the project's venv or set NNCTL)"; exit 1; }
HOSTPY=$(dirname "$NNCTL")/python

CONFIG=${1:-}
if [ -z "$CONFIG" ]; then
  for c in configs/digits.yaml configs/iris.yaml configs/xor.yaml; do
    [ -f "$c" ] && { CONFIG=$c; break; }
  done
fi
if [ -n "$CONFIG" ]; then
  [ -f "$CONFIG" ] || { say "FAIL: no such config: $CONFIG"; exit 1; }
  # Exactly the README's command: `docker run --rm -v "$PWD/runs:/app/runs" nnctl train configs/digits.yaml`
  RUN_ARGS=(train "$CONFIG")
else
  RUN_ARGS=(--help)
  say "no shipped config yet: building the image and running --help only"
fi

# The README's `mkdir -p runs`, run as root: $W/runs belongs to root (the case that failed while the
# image ran as uid 1000). It must be empty: train refuses a folder that already holds a checkpoint.
mkdir -p "$W"
rm -rf "$W/runs" "$W/runs-other"
mkdir -p "$W/runs"
chown 0:0 "$W/runs"

# ------------------------------------------------------------------------------------ build + run
LOG=$W/nnctl-container.log
say "bash $TOOL $ROOT ${RUN_ARGS[*]}   (image $TAG; log $LOG)"
T0=$(date +%s)
set +e
bash "$TOOL" "$ROOT" "${RUN_ARGS[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
T1=$(date +%s)
if [ "$rc" != 0 ]; then
  if grep -q "^=== 6\. build" "$LOG"; then
    say "FAIL: building or running the nnctl image failed (exit $rc; log $LOG)"
    exit 1
  fi
  skip "container-check.sh could not prepare podman or the base image (exit $rc, before our build; log $LOG)"
fi
say "container-check.sh: $((T1 - T0)) s (build + --help + ${RUN_ARGS[*]})"

# shellcheck disable=SC1091
. "$W/env.sh"
size=$(podman image inspect "$TAG" --format '{{.Size}}')
base=$(podman image inspect localhost/python-base:latest --format '{{.Size}}' 2>/dev/null || echo 0)
say "image $TAG: $((size / 1000000)) MB in all, $(((size - base) / 1000000)) MB on top of the base ($((base / 1000000)) MB stand-in for python:3.12-slim)"

# Library versions and the BLAS the weights were computed with, on each side.
VERSIONS_PY='
import ctypes, glob, json, os, platform
import numpy as np
info = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__}
try:
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    info["blas_build"] = "%s %s" % (blas.get("name"), blas.get("version"))
except Exception:
    info["blas_build"] = "unknown"
try:  # the OpenBLAS kernel actually in use (it differs per CPU unless OPENBLAS_CORETYPE pins it)
    lib = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))[0])
    fn = getattr(lib, "scipy_openblas_get_corename64_", None) or getattr(lib, "openblas_get_corename")
    fn.restype = ctypes.c_char_p
    info["blas_kernel"] = fn().decode()
except Exception:
    info["blas_kernel"] = "unknown"
try:  # the CPU features NumPy dispatches its own loops to
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    info["numpy_simd"] = " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f)) or "baseline"
except Exception:
    info["numpy_simd"] = "unknown"
info["env"] = " ".join("%s=%s" % (k, os.environ[k]) for k in sorted(os.environ)
                       if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "NPY_")))
print(json.dumps(info, sort_keys=True))
'
# The host side gets the image's numerics settings (its ENV: BLAS threads, OpenBLAS kernel, NumPy SIMD).
mapfile -t NUMENV < <(podman image inspect "$TAG" --format '{{range .Config.Env}}{{println .}}{{end}}' \
                      | grep -E '^(OPENBLAS_|OMP_|MKL_|NPY_)')
say "numerics settings from the image, applied to the host run too: ${NUMENV[*]}"
host_v=$(env "${NUMENV[@]}" "$HOSTPY" -c "$VERSIONS_PY")
cont_v=$(podman run --rm --pull=never --entrypoint python "$TAG" -c "$VERSIONS_PY")
say "host:      $host_v"
say "container: $cont_v"

if [ "${RUN_ARGS[0]}" != train ]; then
  say "OK (image built and ran --help; $(($(date +%s) - START)) s). No weights to compare until configs/ ships one."
  exit 0
fi

# ------------------------------------------------------------------------------------ any host uid
cont_ckpt=$(find "$W/runs" -name last.npz | head -1)
[ -n "$cont_ckpt" ] || { say "FAIL: the container wrote no last.npz under $W/runs"; ls -lR "$W/runs"; exit 1; }
owners() { find "$1" -mindepth 1 -printf '%U:%G\n' | sort -u | tr '\n' ' '; }
[ "$(owners "$W/runs")" = "0:0 " ] \
  || { say "FAIL: as root on a root-owned runs/, the files belong to $(owners "$W/runs")"; exit 1; }
say "README command as root, runs/ owned by root: trained; the files belong to 0:0"
OTHER_UID=${OTHER_UID:-1234:1234}
mkdir -p "$W/runs-other"
chown "$OTHER_UID" "$W/runs-other"
say "podman run --rm -v $W/runs-other:/app/runs $TAG ${RUN_ARGS[*]}   (runs/ owned by $OTHER_UID)"
podman run --rm --pull=never -v "$W/runs-other:/app/runs" "$TAG" "${RUN_ARGS[@]}" > "$W/other-uid.log" 2>&1 \
  || { tail -20 "$W/other-uid.log"; say "FAIL: the README's command failed on a folder owned by $OTHER_UID"; exit 1; }
[ "$(owners "$W/runs-other")" = "$OTHER_UID " ] \
  || { say "FAIL: on a folder owned by $OTHER_UID the files belong to $(owners "$W/runs-other")"; exit 1; }
other_ckpt=$(find "$W/runs-other" -name last.npz | head -1)
"$HOSTPY" - "$cont_ckpt" "$other_ckpt" <<'PY' || { say "FAIL: root and $OTHER_UID runs gave different weights"; exit 1; }
import sys
import numpy as np
a, b = (np.load(p) for p in sys.argv[1:3])
keys = [k for k in a.files if k[0] in "Wb" and k[1:].isdigit()]
sys.exit(0 if keys and all(np.array_equal(a[k], b[k]) for k in keys) else 1)
PY
say "README command as root, runs/ owned by $OTHER_UID: trained; the files belong to $OTHER_UID; same weights"

# ------------------------------------------------------------------------------------ serve example
# The README's `docker run --rm -p 8000:8000 -v "$PWD/runs:/app/runs" nnctl serve runs/digits/best.npz
# --host 0.0.0.0`, stopped with `docker stop` (SIGTERM). Podman here uses the host's network (the tool's
# containers.conf): -p does nothing there and 8000 may be taken, so the server gets a free port P.
if [ "${RUN_ARGS[1]}" = configs/digits.yaml ]; then
  P=$("$HOSTPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  podman rm -f nnctl-serve-ci > /dev/null 2>&1 || true
  say "podman run -d -p $P:$P -v $W/runs:/app/runs $TAG serve runs/digits/best.npz --host 0.0.0.0 --port $P"
  podman run -d --name nnctl-serve-ci --pull=never -p "$P:$P" -v "$W/runs:/app/runs" "$TAG" \
    serve runs/digits/best.npz --host 0.0.0.0 --port "$P" > /dev/null
  set +e
  "$HOSTPY" - "$P" "$ROOT/datasets/digits.csv" <<'PY'
import csv, json, sys, time, urllib.request
port, data = int(sys.argv[1]), sys.argv[2]
base = f"http://127.0.0.1:{port}"
for _ in range(120):
    try:
        health = json.load(urllib.request.urlopen(base + "/health", timeout=2))
        break
    except OSError:
        time.sleep(0.5)
else:
    print("[container] FAIL: the served container never answered /health")
    sys.exit(1)
with open(data, newline="") as handle:
    row = next(csv.DictReader(handle))
record = {k: float(v) for k, v in row.items() if k != "digit"}
request = urllib.request.Request(base + "/predict", json.dumps(record).encode(), {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=30))
prediction = answer["predictions"][0]
ok = health == {"status": "ok"} and len(answer["predictions"]) == 1
ok = ok and set(prediction["probabilities"]) == {str(d) for d in range(10)} and prediction["label"] in prediction["probabilities"]
print(f"[container] serve: /health {health}; /predict of digits row 1 (a {row['digit']}): label {prediction['label']}")
sys.exit(0 if ok else 1)
PY
  serve_rc=$?
  podman stop -t 20 nnctl-serve-ci > /dev/null
  serve_exit=$(podman inspect nnctl-serve-ci --format '{{.State.ExitCode}}')
  podman logs nnctl-serve-ci > "$W/serve.log" 2>&1
  podman rm -f nnctl-serve-ci > /dev/null
  set -e
  [ "$serve_rc" = 0 ] || { cat "$W/serve.log"; say "FAIL: the serve example did not answer"; exit 1; }
  [ "$serve_exit" = 0 ] || { cat "$W/serve.log"; say "FAIL: the server exited $serve_exit on podman stop"; exit 1; }
  say "serve example: /health and /predict answered; podman stop (SIGTERM): exit 0"
fi

# ------------------------------------------------------------------------------------ host run + compare
HOSTOUT=$(mktemp -d /tmp/nnctl-host.XXXXXX)
trap 'rm -rf "$HOSTOUT"' EXIT
say "host: $NNCTL ${RUN_ARGS[*]} --out $HOSTOUT/run (with the image's numerics settings)"
T2=$(date +%s)
env "${NUMENV[@]}" "$NNCTL" "${RUN_ARGS[@]}" --out "$HOSTOUT/run" > "$HOSTOUT/train.log" 2>&1 \
  || { tail -20 "$HOSTOUT/train.log"; say "FAIL: host training failed"; exit 1; }
say "host training: $(($(date +%s) - T2)) s"

set +e
"$HOSTPY" - "$HOSTOUT/run/last.npz" "$cont_ckpt" "$host_v" "$cont_v" <<'EOF'
import json
import re
import sys

import numpy as np

host_path, cont_path, host_v, cont_v = sys.argv[1:5]
host_v, cont_v = json.loads(host_v), json.loads(cont_v)
with np.load(host_path, allow_pickle=False) as h, np.load(cont_path, allow_pickle=False) as c:
    keys = sorted(k for k in set(h.files) | set(c.files) if re.fullmatch(r"[Wb]\d+", k))
    problems = []
    for k in keys:
        if k not in h.files or k not in c.files:
            problems.append(f"{k}: only in {'host' if k in h.files else 'container'}")
            continue
        a, b = h[k], c[k]
        if a.dtype != b.dtype or a.shape != b.shape:
            problems.append(f"{k}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}")
        elif a.tobytes() != b.tobytes():
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            problems.append(f"{k}: {np.count_nonzero(a != b)}/{a.size} values differ, max |diff| {diff.max():.3g}")
    metas = {}
    for side, z in (("host", h), ("container", c)):
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        metas[side] = {k: v for k, v in meta.items() if re.search(r"version|thread|blas|librar|python|numpy", k)}
print(f"[container] compared {len(keys)} arrays ({', '.join(keys)})")
for side in ("host", "container"):
    print(f"[container] {side} checkpoint meta (versions/threads): {json.dumps(metas[side], sort_keys=True)}")
if not keys:
    print("[container] FAIL: no W*/b* arrays in the checkpoints")
    sys.exit(1)
if not problems:
    print("[container] container vs host: identical weights")
    sys.exit(0)
print("[container] container vs host: weights DIFFER")
for p in problems:
    print(f"[container]   {p}")
# Only the numerics-relevant parts: numpy, its BLAS build and the kernel OpenBLAS picked, the SIMD
# level NumPy dispatches to, the CPU architecture (the Python patch version does not change
# floating-point results).
fields = ("numpy", "blas_build", "blas_kernel", "numpy_simd", "machine")
differs = [f"{f}: host {host_v.get(f)} / container {cont_v.get(f)}" for f in fields if host_v.get(f) != cont_v.get(f)]
if differs:
    print("[container] explained (not a failure): the two sides run different numerics libraries:")
    for d in differs:
        print(f"[container]   {d}")
    print("[container] identical weights are guaranteed only for the same numpy/BLAS build (docs/docker.md);")
    print("[container] install the host with `pip install -c constraints.txt ...` to match the image.")
    sys.exit(0)
print("[container] FAIL: same numpy and BLAS on both sides, yet different weights: determinism is broken")
sys.exit(1)
EOF
rc=$?
set -e
say "done in $(($(date +%s) - START)) s"
exit $rc
