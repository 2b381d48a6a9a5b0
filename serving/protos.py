"""TF Serving's config messages that the tensorflow-serving-api wheel leaves out.

The wheel ships `tensorflow_serving/apis` and a few `config/` protos
(`model_server_config`, `logging_config`, ...), but not `BatchingParameters`
(servables/tensorflow/session_bundle_config.proto), `MonitoringConfig`
(config/monitoring_config.proto) or `SSLConfig` (config/ssl_config.proto).
They are built here from descriptors with TF Serving's package, message names,
field names and numbers, so that the files `tensorflow_model_server` reads
parse here with protobuf's own text format, field for field.

Checked against tensorflow/serving's master (commit 9d981c5c, which serves
TensorFlow 2.20). Only the messages these flags read are declared: the rest of
session_bundle_config.proto (`SessionBundleConfig`, ...) needs TensorFlow's
own config protos and is not read by any flag.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

PACKAGE = "tensorflow.serving"

_Field = descriptor_pb2.FieldDescriptorProto
_WRAPPERS_FILE = wrappers_pb2.DESCRIPTOR.name

# (field name, number, type): a scalar type constant, or a message's full name.
# A leading "repeated " on the name marks a repeated field.
BATCHING_PARAMETERS_FIELDS = (
    ("max_batch_size", 1, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, ".google.protobuf.StringValue"),
    ("repeated allowed_batch_sizes", 6, _Field.TYPE_INT64),
    ("pad_variable_length_inputs", 7, _Field.TYPE_BOOL),
    ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
    ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
)
PROMETHEUS_CONFIG_FIELDS = (
    ("enable", 1, _Field.TYPE_BOOL),
    ("path", 2, _Field.TYPE_STRING),
)
MONITORING_CONFIG_FIELDS = (("prometheus_config", 1, f".{PACKAGE}.PrometheusConfig"),)
SSL_CONFIG_FIELDS = (
    ("server_key", 1, _Field.TYPE_STRING),
    ("server_cert", 2, _Field.TYPE_STRING),
    ("custom_ca", 3, _Field.TYPE_STRING),
    ("client_verify", 4, _Field.TYPE_BOOL),
)


def _message(name: str, fields) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, field_type in fields:
        repeated = field_name.startswith("repeated ")
        field = message.field.add(
            name=field_name.removeprefix("repeated "),
            number=number,
            label=_Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL,
        )
        if isinstance(field_type, str):
            field.type = _Field.TYPE_MESSAGE
            field.type_name = field_type
        else:
            field.type = field_type
    return message


def _file(name: str, messages, dependencies=()) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name=name, package=PACKAGE, syntax="proto3", dependency=list(dependencies)
    )
    file.message_type.extend(_message(*message) for message in messages)
    return file


# A pool of its own: the default pool may one day hold TF Serving's real
# definitions of these files (a future wheel), and two definitions of one
# file name in one pool is an error.
POOL = descriptor_pool.DescriptorPool()
_wrappers = descriptor_pb2.FileDescriptorProto()
wrappers_pb2.DESCRIPTOR.CopyToProto(_wrappers)
POOL.Add(_wrappers)
POOL.Add(
    _file(
        "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        [("BatchingParameters", BATCHING_PARAMETERS_FIELDS)],
        dependencies=[_WRAPPERS_FILE],
    )
)
POOL.Add(
    _file(
        "tensorflow_serving/config/monitoring_config.proto",
        [
            ("PrometheusConfig", PROMETHEUS_CONFIG_FIELDS),
            ("MonitoringConfig", MONITORING_CONFIG_FIELDS),
        ],
    )
)
POOL.Add(_file("tensorflow_serving/config/ssl_config.proto", [("SSLConfig", SSL_CONFIG_FIELDS)]))


def _message_class(name: str):
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


BatchingParameters = _message_class("BatchingParameters")
PrometheusConfig = _message_class("PrometheusConfig")
MonitoringConfig = _message_class("MonitoringConfig")
SSLConfig = _message_class("SSLConfig")
