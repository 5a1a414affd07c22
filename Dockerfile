# One image for every step: Kubeflow components (KFP sets each task's command), the TF Serving-free
# PredictionService, the TFJob trainer, and Beam workers on Dataflow, Flink or Spark (the Beam SDK worker
# boot is the entrypoint, which the others' explicit commands override). Code and pins are baked in, so no
# component installs anything at run time and no module file has to be shipped.
#   docker build -t REGISTRY/syncrec:TAG .
#   python -m pipeline compile --image REGISTRY/syncrec:TAG --output pipeline.yaml
FROM apache/beam_python3.11_sdk:2.77.0 AS beam
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PYTHONPATH=/app
# TF_USE_LEGACY_KERAS is set by model_keras/__init__.py, the one place that chooses the Keras backend.
WORKDIR /app
COPY requirements.txt .
RUN python -m pip install --disable-pip-version-check -r requirements.txt && python -m pip check
COPY --from=beam /opt/apache/beam /opt/apache/beam
COPY schemas/ schemas/
COPY components/ components/
COPY model_keras/ model_keras/
COPY pipeline/ pipeline/
COPY serving/ serving/
COPY synthetic/ synthetic/
COPY data/ data/
RUN python -c "import model_keras, components.transform, pipeline.stages, serving.client"
ENTRYPOINT ["/opt/apache/beam/boot"]
