"""`check_serving_ops`: which ops a SavedModel needs, and which TF Serving releases have them.

The stock `tensorflow_model_server` registers every op of the TensorFlow it is
built from, plus the TF Text ops of the TF Text version it bundles (its
`model_servers/BUILD` links `@org_tensorflow_text//tensorflow_text:ops_lib`;
releases 2.0 and 2.1 link five TF Text op libraries by name). An export whose
graph uses an op the server lacks fails to load with "Op type not registered".

An op is *core* when TensorFlow registers it on its own: the registry of a
fresh Python process that imports `tensorflow` and nothing else (in this
process `tensorflow_text`, and whatever else was loaded, have added their
ops). Every other op must be one of the TF Text ops in the table below, or no
stock TF Serving release runs the export.

The version floor covers the non-core ops only: a core op is assumed present
in every release (it surely is in TF Serving built from the TensorFlow that
wrote the export, `ServingOpsReport.tensorflow_version`, and newer). Neither
is a check of op attributes: an op may have gained an attribute that an older
server rejects ("NodeDef mentions attr ... not in Op"); TensorFlow 2.20 writes
`VarHandleOp` nodes with `debug_name`, which TensorFlow 2.13's op lacks.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import types
from collections.abc import Mapping

from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2

from keras_bert_kit.export.saved_model import existing_versions

SAVED_MODEL_FILE = "saved_model.pb"
SERVE_TAG = "serve"

# -- the TF Text ops each stock TF Serving release registers ---------------------------
#
# Sources (tags of github.com/tensorflow/serving and github.com/tensorflow/text):
# - the TF Text archive `tensorflow_serving/workspace.bzl` downloads as
#   `org_tensorflow_text`, per TF Serving release tag;
# - the op libraries `tensorflow_serving/model_servers/BUILD` links: five
#   `*_cc` targets by name in 2.0.0-2.1.4, `tensorflow_text:ops_lib` from 2.2.0;
# - the deps of `ops_lib` in that TF Text version's `tensorflow_text/BUILD`,
#   and the op names those libraries register in its `tensorflow_text/core`
#   (`REGISTER_OP("...")`, or `kOpName` in the TFLite-shim kernel templates,
#   whose ops are named "TFText>...").
# Ops that only TF Text's Python wheel registers (`trimmer_ops`,
# `utf8_binarize_op` before TF Text 2.20) are missing from the servers that
# bundle an `ops_lib` without them: keras-hub's `MultiSegmentPacker` uses
# `TFText>RoundRobinTrim`, which TF Serving only has from 2.20.0.

_TF_TEXT_2_0 = frozenset({  # a2f2ad0, as TF Serving 2.0.0-2.1.4 link it
    "ConstrainedSequence",
    "SentenceFragments",
    "UnicodeScriptTokenizeWithOffsets",
    "WhitespaceTokenizeWithOffsets",
    "WordpieceTokenizeWithOffsets",
})
_TF_TEXT_2_2 = _TF_TEXT_2_0 | {  # 2.2.0 and 2.3.0
    "CaseFoldUTF8",
    "MaxSpanningTree",
    "NormalizeUTF8",
    "RegexSplitWithOffsets",
    "RougeL",
    "SentencepieceDetokenizeOp",
    "SentencepieceIdToStringOp",
    "SentencepieceOp",
    "SentencepieceTokenizeOp",
    "SentencepieceTokenizeWithOffsetsOp",
    "SentencepieceVocabSizeOp",
    "SplitMergeTokenizeWithOffsets",
}
_TF_TEXT_2_4 = _TF_TEXT_2_2 | {  # 2.4.3, 2.5.0 and 2.6.0
    "FindSourceOffsets",
    "NormalizeUTF8WithOffsetsMap",
    "SentenceFragmentsV2",
    "SentencepieceStringToIdOp",
    "TokenizerFromLogits",
}
_TF_TEXT_2_7 = _TF_TEXT_2_4 | {  # 2.7.3 and 2.8.2
    "FastWordpieceTokenizeWithOffsets",
    "TFText>FastWordpieceDetokenize",
    "TFText>WhitespaceTokenizeWithOffsetsV2",
}
_TF_TEXT_2_12 = _TF_TEXT_2_7 | {  # 2.12.1
    "FastBertNormalize",
    "PhraseTokenize",
    "TFText>BoiseTagsToOffsets",
    "TFText>ByteSplitByOffsets",
    "TFText>ByteSplitWithOffsets",
    "TFText>FastSentencepieceDetokenize",
    "TFText>FastSentencepieceTokenize",
    "TFText>NgramsStringJoin",
    "TFText>OffsetsToBoiseTags",
    "TFText>PhraseDetokenize",
}
_TF_TEXT_2_20 = _TF_TEXT_2_12 | {  # 2.20.0
    "TFText>RoundRobinGenerateMasks",
    "TFText>RoundRobinTrim",
    "TFText>Utf8Binarize",
}

# (TF Serving release, TF Text version it bundles, the TF Text ops it registers),
# every release tagged in tensorflow/serving, oldest first. Releases after the
# last are assumed to keep its ops. TF Serving 2.8 and 2.9 went back to TF Text
# 2.6.0, so an op can be missing from a release newer than one that has it.
TF_SERVING_RELEASES = tuple(
    (release, tf_text, ops)
    for releases, tf_text, ops in (
        (("2.0.0", "2.1.0", "2.1.4"), "a2f2ad0", _TF_TEXT_2_0),
        (("2.2.0", "2.2.2", "2.2.3", "2.3.0", "2.3.3", "2.3.4"), "2.2.0", _TF_TEXT_2_2),
        (("2.4.0", "2.4.1", "2.4.2"), "2.3.0", _TF_TEXT_2_2),
        (("2.4.3", "2.4.4", "2.5.1", "2.5.2", "2.5.3", "2.5.4"), "2.4.3", _TF_TEXT_2_4),
        (("2.6.0", "2.6.1", "2.6.2", "2.6.3", "2.6.5"), "2.5.0", _TF_TEXT_2_4),
        (("2.7.0",), "2.6.0", _TF_TEXT_2_4),
        (("2.7.3", "2.7.4"), "2.7.3", _TF_TEXT_2_7),
        (("2.8.0", "2.8.2", "2.8.3", "2.8.4", "2.9.0", "2.9.1", "2.9.2", "2.9.3"),
         "2.6.0", _TF_TEXT_2_4),
        (("2.10.0", "2.10.1"), "2.7.3", _TF_TEXT_2_7),
        (("2.11.0", "2.11.1"), "2.8.2", _TF_TEXT_2_7),
        (("2.12.0", "2.12.1", "2.12.2", "2.13.0", "2.13.1", "2.14.0", "2.14.1", "2.15.1",
          "2.16.1", "2.17.0", "2.17.1", "2.18.0", "2.18.1", "2.19.0", "2.19.1"),
         "2.12.1", _TF_TEXT_2_12),
        (("2.20.0",), "2.20.0", _TF_TEXT_2_20),
    )
    for release in releases
)
TF_TEXT_OPS = frozenset().union(*(ops for _, _, ops in TF_SERVING_RELEASES))


# -- core TensorFlow ops --------------------------------------------------------------

# Run in a fresh interpreter (-P: the working directory stays off sys.path),
# so only TensorFlow's own ops are registered. TF_GetAllOpList is TensorFlow's
# C API, exported by `pywrap_tf_session` (checked against TensorFlow 2.20.0).
_LIST_CORE_OPS = """
import sys
import tensorflow
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c_api
if "tensorflow_text" in sys.modules:
    sys.exit("importing tensorflow imported tensorflow_text")
buffer = c_api.TF_GetAllOpList()
ops = op_def_pb2.OpList.FromString(c_api.TF_GetBuffer(buffer))
c_api.TF_DeleteBuffer(buffer)
print("\\n".join(sorted(op.name for op in ops.op)))
"""


@functools.lru_cache(maxsize=1)
def core_tensorflow_ops() -> frozenset[str]:
    """The op types TensorFlow registers without any other library (computed once)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-P", "-c", _LIST_CORE_OPS],
        capture_output=True, text=True, env=env, timeout=600,
    )
    names = frozenset(result.stdout.split())
    if result.returncode != 0 or not names:
        raise RuntimeError(
            "Could not list TensorFlow's own ops in a fresh Python process "
            f"(exit status {result.returncode}): {result.stderr[-2000:]}"
        )
    return names


# -- reading the graph ----------------------------------------------------------------


def _read_serve_meta_graph(export_dir):
    export_dir = os.fspath(export_dir)
    if not os.path.isdir(export_dir):
        raise ValueError(f"{export_dir!r} is not a directory (expected a SavedModel directory).")
    path = os.path.join(export_dir, SAVED_MODEL_FILE)
    if not os.path.isfile(path):
        versions = existing_versions(export_dir)
        hint = (
            f" (pass a version directory, e.g. {os.path.join(export_dir, str(versions[-1]))})"
            if versions else ""
        )
        raise ValueError(f"{path} is missing: {export_dir!r} is no SavedModel directory{hint}.")
    with open(path, "rb") as f:
        data = f.read()
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(data)
    except DecodeError as error:
        raise ValueError(f"{path} is not a SavedModel protocol buffer: {error}.") from None
    for meta_graph in saved_model.meta_graphs:
        if list(meta_graph.meta_info_def.tags) == [SERVE_TAG]:
            return meta_graph
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    tag_sets = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(
        f"{path} has no MetaGraphDef tagged {SERVE_TAG!r} (TF Serving loads that one); "
        f"its tag sets: {tag_sets}."
    )


def _called_functions(node):
    """The names of the library functions a NodeDef refers to in its attributes."""
    for attr in node.attr.values():
        if attr.HasField("func"):
            yield attr.func.name
        yield from (function.name for function in attr.list.func)


def _tensor_node(tensor_name):
    return tensor_name.lstrip("^").split(":")[0]


def _signature_ops(graph_def, signature, functions):
    """The op types one SignatureDef runs: the graph nodes its outputs depend
    on, and every library function those call, however deeply nested."""
    nodes = {node.name: node for node in graph_def.node}
    pending = [_tensor_node(t.name) for t in signature.outputs.values()]
    seen_nodes, seen_functions, ops = set(), set(), set()
    pending_functions = []
    while pending:
        name = pending.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        ops.add(node.op)
        pending.extend(_tensor_node(i) for i in node.input)
        pending_functions.extend(_called_functions(node))
    while pending_functions:
        name = pending_functions.pop()
        if name in seen_functions or name not in functions:
            continue
        seen_functions.add(name)
        for node in functions[name].node_def:
            ops.add(node.op)
            pending_functions.extend(_called_functions(node))
    return ops


# -- the report -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpsCompatibility:
    """The op types of a graph (or of one signature) and the TF Serving releases that run them.

    Attributes:
        ops: every op type, sorted.
        non_core_ops: those TensorFlow does not register on its own.
        unsupported_ops: the non-core ops no stock TF Serving release registers.
        releases: the TF Serving releases of `TF_SERVING_RELEASES` that
            register every non-core op, oldest first (empty when any is
            unsupported). Not always contiguous: 2.8 and 2.9 lack ops 2.7.3 has.
    """

    ops: tuple[str, ...]
    non_core_ops: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    releases: tuple[str, ...]

    @classmethod
    def of(cls, ops, core_ops):
        non_core = sorted(op for op in ops if op not in core_ops)
        releases = tuple(
            release for release, _, registered in TF_SERVING_RELEASES
            if registered.issuperset(non_core)
        )
        return cls(
            ops=tuple(sorted(ops)),
            non_core_ops=tuple(non_core),
            unsupported_ops=tuple(op for op in non_core if op not in TF_TEXT_OPS),
            releases=releases,
        )

    @property
    def min_serving_version(self) -> str | None:
        """The oldest TF Serving release that runs these ops; None if none does."""
        return self.releases[0] if self.releases else None

    def describe_releases(self) -> str:
        """The releases as ranges of the table, e.g. "2.7.3-2.7.4, 2.10.0 and newer"."""
        if not self.releases:
            return "none (ops no stock release registers)"
        order = [release for release, _, _ in TF_SERVING_RELEASES]
        runs = []
        for release in self.releases:
            if runs and order.index(release) == order.index(runs[-1][-1]) + 1:
                runs[-1].append(release)
            else:
                runs.append([release])
        parts = [run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs]
        if runs[-1][-1] == order[-1]:
            parts[-1] = f"{runs[-1][0]} and newer"
        return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class ServingOpsReport(OpsCompatibility):
    """What `check_serving_ops` found: the whole graph's ops (the fields of
    `OpsCompatibility`, which TF Serving needs to load the export) and each
    signature's.

    Attributes:
        export_dir: the SavedModel directory.
        tensorflow_version: the TensorFlow that wrote it (core ops are
            assumed present in TF Serving of that version or newer).
        signatures: {signature name: OpsCompatibility}.
    """

    export_dir: str
    tensorflow_version: str
    signatures: Mapping[str, OpsCompatibility] = dataclasses.field(hash=False)

    def table(self) -> str:
        """A readable table: per signature and for the whole graph, the op
        count, the non-core ops and the TF Serving releases that run them."""
        rows = [("signature", "ops", "non-core ops (TF Text unless marked *)", "TF Serving")]
        for name, part in [*self.signatures.items(), ("(whole graph)", self)]:
            non_core = ", ".join(
                f"{op}*" if op in part.unsupported_ops else op for op in part.non_core_ops
            )
            rows.append((name, str(len(part.ops)), non_core or "-", part.describe_releases()))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            f"Ops of {self.export_dir} (written by TensorFlow {self.tensorflow_version or '?'})",
            *(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3]
                for row in rows
            ),
        ]
        if self.unsupported_ops:
            lines.append("* not TensorFlow's nor a TF Text op of any stock TF Serving release")
        lines.append(
            "TF Serving: the releases whose TF Text has every non-core op. Core ops, and the "
            "attributes of any op, are not checked against releases older than the writer's."
        )
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def check_serving_ops(export_dir) -> ServingOpsReport:
    """The op types of a SavedModel and the oldest stock TF Serving release that runs them.

    Reads only `export_dir/saved_model.pb` (nothing is loaded or run): the
    `serve` MetaGraphDef's graph and every function of its library.

    Args:
        export_dir: a SavedModel directory, e.g. a version directory that
            `export_saved_model` returned.

    Returns:
        A `ServingOpsReport`: `ops`, `non_core_ops`, `unsupported_ops`,
        `releases`, `min_serving_version` (e.g. "2.12.0"; None when no stock
        release registers some op), the same per signature in `signatures`,
        and `table()` (also `str(report)`).

    Raises:
        ValueError: `export_dir` is no directory, or its `saved_model.pb` is
            missing, not a SavedModel, or has no `serve` MetaGraphDef.
    """
    meta_graph = _read_serve_meta_graph(export_dir)
    graph_def = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph_def.library.function}
    ops = {node.op for node in graph_def.node}
    for function in functions.values():
        ops.update(node.op for node in function.node_def)
    core_ops = core_tensorflow_ops()
    signatures = {
        name: OpsCompatibility.of(_signature_ops(graph_def, signature, functions), core_ops)
        for name, signature in sorted(meta_graph.signature_def.items())
        if not name.startswith("__")  # "__saved_model_init_op" is no signature clients call
    }
    whole = OpsCompatibility.of(ops, core_ops)
    return ServingOpsReport(
        **dataclasses.asdict(whole),
        export_dir=os.fspath(export_dir),
        tensorflow_version=meta_graph.meta_info_def.tensorflow_version,
        signatures=types.MappingProxyType(signatures),
    )
