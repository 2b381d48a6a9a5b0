"""Command-line jobs built on keras_bert_kit (pretrain, distill, finetune, pipeline).

Importing the package quiets TensorFlow's start-up noise first (see `training.console`).
"""

from training.console import quiet_console

quiet_console()
