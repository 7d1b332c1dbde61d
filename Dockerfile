# lstmserve: the gRPC server and a model repository, without torch.
#
#   make model && podman build -t lstmserve .          # bakes models/ (the default digits model) in
#   make image-cuda                                     # the CUDA image: onnxruntime-gpu, --device cuda
#   podman run -p 127.0.0.1:50051:50051 lstmserve       # or -v ./my-models:/models:ro to serve others
#
# The model repository comes from the build context (`make model` trains and exports the default
# one): training inside the build would need torch, whose PyPI build is multi-GB CUDA.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY lstmserve/ lstmserve/
COPY model/ model/
COPY imports/ imports/
COPY export/ export/
COPY proto/ proto/
COPY server/ server/
COPY client/ client/
COPY benchmarks/ benchmarks/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# The [serve] extra only, pinned: onnxruntime, grpcio, health, reflection, protobuf, numpy, uvicorn,
# orjson. No torch.
# The CUDA image (make image-cuda) takes deploy/requirements-serve-cuda.txt and DEVICE=cuda instead:
# onnxruntime-gpu and NVIDIA's runtime wheels from PyPI; the rest of this file is the same for both.
ARG REQUIREMENTS=deploy/requirements-serve.txt
ARG DEVICE=cpu
COPY ${REQUIREMENTS} /tmp/requirements-serve.txt
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --requirement /tmp/requirements-serve.txt \
    && pip install --no-cache-dir --no-deps /wheels/lstmserve-*.whl \
    && rm -rf /wheels /tmp/requirements-serve.txt \
    && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin lstmserve
COPY models/ /models/

# Settings are LSTMSERVE_* variables (see docs/serving.md); these make it a container server.
ENV LSTMSERVE_DEVICE=${DEVICE} \
    LSTMSERVE_HOST=0.0.0.0 \
    LSTMSERVE_PORT=50051 \
    LSTMSERVE_HTTP_PORT=8080 \
    LSTMSERVE_REPOSITORY=/models \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 50051 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-m", "lstmserve.server.healthcheck"]
# Exec form: the server is PID 1 and gets SIGTERM itself (it drains in-flight calls, then exits 0).
ENTRYPOINT ["lstmserve", "serve"]
