"""`GraphModel`: a functional model built by one method, which also builds its internals view."""

import keras

from keras_bert_kit.models.inputs import IdInputsModel


class CheckedView(keras.Model):
    """A functional model that validates its inputs with `check_inputs` before running.

    Not registered: it is a view of a model that is (`with_internals`).
    """

    def __init__(self, inputs, outputs, check_inputs, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.check_inputs = check_inputs

    def call(self, inputs, training=None, mask=None):
        return super().call(self.check_inputs(inputs), training=training, mask=mask)


class GraphModel(IdInputsModel):
    """Mixin of pretrainers and tasks: one graph-building method, two graphs.

    A subclass names the layers its graph uses in `graph_layer_names` (kept
    as attributes of the model) and builds its graph in the static method
    `build_graph(layers, inputs, full_sequence=False)`, which returns
    `{"outputs", "hidden_states", "attentions"}` (see `encoder.encode`). The
    model is that graph's `outputs`; `with_internals` builds the same graph
    again, over the same layers, on fresh inputs, with all three outputs.
    Both check their inputs with `check_inputs` (see `models.inputs`).
    """

    graph_layer_names = ()

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        raise NotImplementedError

    def graph_layers(self):
        """{name: layer} of the layers `build_graph` takes, as this model holds them."""
        return {name: getattr(self, name) for name in self.graph_layer_names}

    def check_inputs(self, inputs):
        """The model inputs of `inputs`, validated (names, dtypes, shapes, id ranges).

        A batch of no sequences, `[0, 0]`, passes (a tagger's text function
        makes one from no texts); what the graph then does with it is its own.
        """
        return self.encoder.check_inputs(inputs, owner=self.name, allow_empty_batch=True)

    def call(self, inputs, training=None, mask=None):
        # Checked here: the functional graph would silently cast float ids
        # (and truncate int64 ones) to its int32 inputs before any layer runs.
        return super().call(self.check_inputs(inputs), training=training, mask=mask)

    def with_internals(self):
        """A functional view of this model, sharing its weights, with three outputs.

        - `outputs`: what the model outputs (same structure);
        - `hidden_states`: the embedding output, then every transformer
          layer's output over the whole sequence, `[batch, seq, hidden]`;
        - `attentions`: every layer's float32 attention probabilities
          `[batch, heads, seq, seq]`.

        Where the model's last layer computes only the rows its head reads,
        the view's computes every row, and the head still gets its rows. The
        view takes the model's input dict; `training` reaches every layer.
        """
        inputs = {
            name: keras.Input(batch_shape=x.shape, dtype=x.dtype, name=name)
            for name, x in self.input.items()
        }
        graph = self.build_graph(self.graph_layers(), inputs, full_sequence=True)
        return CheckedView(
            inputs, graph, self.check_inputs, name=f"{self.name}_with_internals"
        )
