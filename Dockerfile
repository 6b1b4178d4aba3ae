# nnctl in a container: `docker build -t nnctl .` then
#   docker run --rm -v "$PWD/runs:/app/runs" nnctl train configs/digits.yaml
#   docker run --rm -p 8000:8000 -v "$PWD/runs:/app/runs" nnctl serve runs/digits/best.npz --host 0.0.0.0
# nnctl runs as the owner of the mounted runs/ folder, whatever the host uid (docker/entrypoint.py).
# See docs/docker.md for what is (and is not) guaranteed to be bit-identical.
#
# BASE is overridable so the image can be built from a local stand-in where Docker Hub is out of
# reach (CI: ../shared/tools/container-check.sh builds one from Debian's python3 and passes
# --build-arg BASE=localhost/python-base). Anything with `python3 -m venv` works (3.10+).
ARG BASE=python:3.12-slim
FROM ${BASE}

# The app lives in its own virtual environment: this works on the official image (system pip) and
# on Debian's python3 (where PEP 668 blocks `pip install` into the system interpreter) alike.
# Bit-reproducible numerics by default (docs/docker.md), each overridable with `docker run -e`:
#  - BLAS threads pinned to 1 (a multi-threaded GEMM splits its sums differently per thread count);
#  - OpenBLAS's kernel pinned to Haswell (AVX2+FMA): left alone, OpenBLAS picks a kernel per CPU
#    (SkylakeX on an AVX-512 machine, Haswell/Zen on others), and different kernels round differently;
#  - NumPy's own SIMD loops capped at x86-64-v3 (AVX2) for the same reason: its AVX-512 exp/log/...
#    differ in the last bit from the AVX2 ones. The feature names belong to the locked NumPy 2.4.
# So one image gives the same weights on every x86-64 CPU with AVX2 (Intel 2013+, AMD Zen).
# `-e OPENBLAS_CORETYPE= -e NPY_DISABLE_CPU_FEATURES=` restores autodetection (needed on CPUs
# without AVX2; ignored on arm64, which has its own kernels and so its own numbers).
ENV VIRTUAL_ENV=/opt/nnctl \
    PATH=/opt/nnctl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    OPENBLAS_CORETYPE=Haswell \
    NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"

# 1. Dependencies, exactly as locked and nothing else (--no-deps: a package missing from the lock is
#    not quietly resolved to whatever is newest; step 3's `pip check` reports it). Binary wheels only:
#    no compiler needed, none left behind. The venv gets no pip of its own: the base image's `pip`
#    (not in /opt/nnctl/bin, so next on PATH) installs into it with --python, so no installer is
#    left in the app's environment. This layer depends on the two lock files alone, so editing the
#    source does not redo it. constraints-serve.txt locks the serve extra (FastAPI, uvicorn) for
#    `nnctl serve`.
COPY constraints.txt constraints-serve.txt /tmp/
RUN python3 -m venv --without-pip "$VIRTUAL_ENV" \
 && pip --python "$VIRTUAL_ENV/bin/python" install --quiet --no-deps --only-binary=:all: \
        --requirement /tmp/constraints.txt --requirement /tmp/constraints-serve.txt \
 && rm /tmp/constraints.txt /tmp/constraints-serve.txt

# 2. A non-root user (uid 1000) that owns the image's own /app/runs (used when nothing is mounted
#    there), and the bundled configs and data, so `docker run IMAGE train configs/digits.yaml` needs
#    no mount.
RUN (getent group 1000 >/dev/null || groupadd --gid 1000 nnctl) \
 && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin nnctl \
 && mkdir -p /app/runs \
 && chown 1000:1000 /app/runs
WORKDIR /app
COPY configs ./configs
COPY datasets ./datasets

# 3. The project itself (last: it changes most often), without touching the locked dependencies.
#    `pip check` fails the build when pyproject.toml asks for something constraints.txt does not pin
#    (regenerate the lock then). The build backend lives in a throw-away build environment. The .pyc
#    files pip compiles are kept: the non-root user could not write them, and startup stays fast.
COPY pyproject.toml README.md /tmp/src/
COPY nnctl /tmp/src/nnctl
RUN pip --python "$VIRTUAL_ENV/bin/python" install --quiet --no-deps /tmp/src \
 && { pip --python "$VIRTUAL_ENV/bin/python" check \
      || { echo "constraints.txt does not satisfy pyproject.toml: regenerate it (docs/docker.md)" >&2; exit 1; }; } \
 && rm -rf /tmp/src \
 && nnctl --version

# 4. The entrypoint starts as root and runs nnctl as the owner of /app/runs: a bind-mounted host
#    folder is then writable, and what nnctl writes belongs to the folder's owner, for any host uid
#    (root included) without `--user`. `docker run --user UID:GID` still works (no switch then).
COPY docker/entrypoint.py /usr/local/bin/nnctl-entrypoint
VOLUME ["/app/runs"]
EXPOSE 8000

ENTRYPOINT ["/opt/nnctl/bin/python", "-I", "/usr/local/bin/nnctl-entrypoint"]
CMD ["--help"]
