"""Pipeline components of syncrec (TFX-style: ExampleGen/Transform, Trainer, Evaluator, Pusher).

Each component is a thin shell around pure functions and Beam PTransforms that live in the
modules of this package, so the same code runs under a local runner, in tests and on Kubeflow.
"""
