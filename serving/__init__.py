"""Serving the exports: a TF Serving gRPC client and a TF Serving-compatible server.

`serving.client` talks to `tensorflow_model_server` (production: the
`tensorflow/serving` image) or to `serving.server`, which speaks the same
gRPC and REST protocols and loads models the same way, for development and
tests. The library (`keras_bert_kit`) never imports this package.

Importing the package quiets TensorFlow's start-up noise first (see `training.console`).
"""

from training.console import quiet_console

quiet_console()

# The signature TF Serving runs when a request names none (signature_constants.h).
DEFAULT_SIGNATURE = "serving_default"
