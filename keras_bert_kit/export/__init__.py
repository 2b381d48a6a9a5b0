"""Export for serving: SavedModels for TensorFlow Serving, .tflite models for devices."""

from keras_bert_kit.export.saved_model import (
    existing_versions,
    export_saved_model,
    read_export_settings,
)
from keras_bert_kit.export.serving_ops import (
    TF_SERVING_RELEASES,
    ServingOpsReport,
    check_serving_ops,
)
from keras_bert_kit.export.signatures import SIGNATURES, SignatureBuilder, model_kind
from keras_bert_kit.export.tflite import (
    QUANTIZATIONS,
    TFLiteExportError,
    export_tflite,
    read_tflite_settings,
    tflite_ops,
)
from keras_bert_kit.export.tflite_runner import TFLiteInvocationError, TFLiteModel
from keras_bert_kit.export.verify import ExportVerificationError, verify_export
from keras_bert_kit.export.warmup import read_warmup_requests, write_warmup_requests

__all__ = [
    "ExportVerificationError",
    "QUANTIZATIONS",
    "TFLiteExportError",
    "TFLiteInvocationError",
    "TFLiteModel",
    "export_tflite",
    "read_tflite_settings",
    "tflite_ops",
    "SIGNATURES",
    "ServingOpsReport",
    "TF_SERVING_RELEASES",
    "SignatureBuilder",
    "check_serving_ops",
    "existing_versions",
    "export_saved_model",
    "model_kind",
    "read_export_settings",
    "read_warmup_requests",
    "verify_export",
    "write_warmup_requests",
]
