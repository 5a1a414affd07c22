"""The data contract of syncrec: what the data path writes and the model reads.

`raw_log.pbtxt` and `sequence_example.pbtxt` are the curated schemas (tensorflow_metadata);
`features.py` names the features and splits, read from those schemas; `vocabulary.py` maps raw
item ids to model ids. The data path (`components/`) and the model (`model_keras/`) both import
this package and nothing of each other (TFX taxi template: `models/features.py`).
"""
