# moonfm training/serving image (SageMaker "bring your own container").
#   docker build -t moonfm .
#   docker run --rm -v "$PWD/t:/opt/ml" moonfm train
# Without a Docker engine: scripts/check-image builds and runs it with podman/buildah.
FROM debian:bookworm-slim

# Dependencies first, in their own layer, so editing the source does not
# re-run apt. apt lists are dropped to keep the image small.
COPY scripts/install-deps /src/scripts/install-deps
RUN /src/scripts/install-deps && rm -rf /var/lib/apt/lists/*

COPY . /src
# The build tree is removed: only /opt/moonfm is needed at run time.
RUN cmake -S /src -B /src/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/moonfm \
 && cmake --build /src/build -j2 \
 && cmake --install /src/build \
 && rm -rf /src/build

# Multi-host jobs (docs/multi-host.md): the leader starts mpirun over ssh on
# the other hosts, which run sshd.  Every host runs this same image, so one
# key pair baked in lets them log in to each other, as SageMaker's own
# framework images do.
RUN mkdir -p /run/sshd /root/.ssh \
 && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519 \
 && cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys \
 && printf 'Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' > /root/.ssh/config \
 && chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys /root/.ssh/config

# Nothing is put under /opt/ml (contract rule 6): SageMaker mounts it at run time.
# OPENBLAS_CORETYPE is deliberately NOT set here: the CPU is only known when the
# container starts, and moonfm chooses it itself (re-exec when it is unset).
ENV PATH=/opt/moonfm/bin:$PATH \
    MOONFM_RECIPE=train.lua
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true

# Exec form, no shell, no tini: moonfm runs as PID 1 and handles SIGTERM itself
# (contract rules 1 and 4). SageMaker appends "train" or "serve".
ENTRYPOINT ["moonfm"]
