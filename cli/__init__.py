"""The offline commands around a checkpoint: `resnet-predict`, `resnet-eval`, `resnet-export`, `resnet-import`.

Training is the worker in training/ (`resnet-train`) and serving is app/ (`resnet-serve`); these commands use a
model outside both. Every one follows one convention (models/cli.py): `prog: error: message` on stderr and exit
status 1 for an expected failure.
"""
