"""Runs SavedModel signatures the way TensorFlow Serving does.

TF Serving loads the `serve` MetaGraphDef into a TF1 session (running its
init ops) and runs a SignatureDef by feeding and fetching the tensor names it
lists; it never calls the TF2 functions. A graph that only works through
`tf.saved_model.load` fails here as it would in the server.
"""

import tensorflow as tf


class SessionModel:
    """One export loaded in a `tf.compat.v1.Session`, as TF Serving loads it."""

    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(
                self.session, [tf.saved_model.SERVING], export_dir
            )
        self.signatures = dict(meta_graph.signature_def)

    def run(self, signature_name, inputs):
        """{output name: numpy value} of `signature_name` on {input name: array}."""
        signature = self.signatures[signature_name]
        feed = {signature.inputs[name].name: value for name, value in inputs.items()}
        fetches = {name: info.name for name, info in signature.outputs.items()}
        return self.session.run(fetches, feed_dict=feed)

    def close(self):
        self.session.close()
