"""Command-line jobs built on keras_bert_kit (pretrain, distill, finetune, pipeline)."""
