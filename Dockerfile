# Component image for Kubeflow: the project's code and pinned dependencies baked in, so no
# component installs anything at run time and no module file has to be shipped.
#   docker build -t REGISTRY/syncrec:TAG .
#   python -m pipeline compile --image REGISTRY/syncrec:TAG --output pipeline.yaml
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
# TF_USE_LEGACY_KERAS is set by model_keras/__init__.py, which every entry point imports first.
WORKDIR /app
COPY requirements.txt .
RUN python -m pip install --disable-pip-version-check -r requirements.txt && python -m pip check
COPY components/ components/
COPY model_keras/ model_keras/
COPY pipeline/ pipeline/
COPY schemas/ schemas/
COPY serving/ serving/
COPY synthetic/ synthetic/
COPY data/ data/
RUN python -c "import model_keras, components.transform, pipeline.stages, serving.client"
