# GPU ingest image: circuitcat on a CUDA PyTorch base, running as a non-root user.
# Build from the repository root (docs/ingest-your-model.md):
#   docker build -f docker/ingest.Dockerfile -t circuitcat-ingest .
# The base's torch satisfies circuitcat's torch requirement, so pip keeps it (no second copy).
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /tmp/circuitcat
COPY pyproject.toml README.md ./
COPY catalog ./catalog
COPY ingest ./ingest
COPY cli ./cli
RUN pip install --no-cache-dir . \
    && rm -rf /tmp/circuitcat \
    && useradd --create-home --uid 10001 --user-group circuitcat

# Caches (Hugging Face downloads, feature-pass checkpoints) live under the home folder: mount a
# volume at /home/circuitcat/.cache so a killed job resumes and weights download once.
USER 10001:10001
WORKDIR /home/circuitcat
ENTRYPOINT ["circuitcat"]
CMD ["--help"]
