# The app: Streamlit pages over the `rag` core. Milvus runs in its own containers (docker-compose.yml).
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # llama-cpp-python compiles llama.cpp here: for any x86-64 CPU, not just the build machine's.
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt constraints.txt ./
# torch from the CPU index first: the default one pulls several GB of CUDA wheels.
RUN pip install "pip==25.3" \
 && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
 && pip install -r requirements.txt -c constraints.txt \
 && pip install --no-deps -r requirements-nodeps.txt -c constraints.txt

FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 app
COPY --from=build /opt/venv /opt/venv
# RAG_CACHE_DIR in the data volume: the embedding backends are measured (and the model exported
# to ONNX) once per volume, not once per container.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RAG_DATA_DIR=/app/data \
    RAG_CACHE_DIR=/app/data/cache
WORKDIR /app
COPY --chown=app:app . .
RUN mkdir -p /app/data && chown app:app /app/data
USER app
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=5)"]
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
