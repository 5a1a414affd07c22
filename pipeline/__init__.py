"""The syncrec pipeline: ExampleGen/Transform -> ImportSchema -> ExampleValidator -> Trainer ->
Evaluator (blessing) -> Pusher, defined once with the Kubeflow Pipelines v2 SDK and run locally
with kfp.local or on Kubeflow from the compiled pipeline.yaml."""
