"""The data path of syncrec (TFX ExampleGen/Transform, SchemaGen, ExampleValidator).

Raw interaction logs -> validated TFRecord SequenceExamples with Apache Beam. Components here are
thin shells around pure functions and Beam PTransforms, so the same code runs under a local
runner, in tests and on Kubeflow. They depend on the data contract (`schemas/`) only; training,
evaluation and pushing live in `model_keras/` and `pipeline/`.
"""
