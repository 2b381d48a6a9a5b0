"""`GraphModel`: a functional model built by one method, which also builds its internals view."""

import keras


class GraphModel:
    """Mixin of pretrainers and tasks: one graph-building method, two graphs.

    A subclass names the layers its graph uses in `graph_layer_names` (kept
    as attributes of the model) and builds its graph in the static method
    `build_graph(layers, inputs, full_sequence=False)`, which returns
    `{"outputs", "hidden_states", "attentions"}` (see `encoder.encode`). The
    model is that graph's `outputs`; `with_internals` builds the same graph
    again, over the same layers, on fresh inputs, with all three outputs.
    """

    graph_layer_names = ()

    @staticmethod
    def build_graph(layers, inputs, full_sequence=False):
        raise NotImplementedError

    def graph_layers(self):
        """{name: layer} of the layers `build_graph` takes, as this model holds them."""
        return {name: getattr(self, name) for name in self.graph_layer_names}

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
        return keras.Model(inputs, graph, name=f"{self.name}_with_internals")
