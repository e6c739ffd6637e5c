"""Text: an embedding that turns token ids into a token sequence, and the recurrent layers that read
one (LSTM, GRU), with PyTorch's weights and names (``weight_ih_l0``, ``weight_hh_l0``,
``bias_ih_l0``, ``bias_hh_l0``): one layer, one direction, ``batch_first``, zero initial state."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from netspec.layers.base import (
    IDS,
    TOKENS,
    Analysis,
    Layer,
    LayerInput,
    ShapeIssue,
    TensorShape,
    WeightTensor,
    fmt_shape,
    layout_of,
    require_tokens,
)


class Embedding(Layer):
    """A learned vector per token id (PyTorch ``nn.Embedding``, Keras ``Embedding``): ids L -> a
    token sequence L×D. An id outside [0, num_embeddings) is an error in PyTorch (Keras gives zeros).
    params = num_embeddings · D; MACs = 0 (a lookup)."""

    category = "text"
    takes_ids = True
    synonyms = {"input_dim": "num_embeddings", "vocab_size": "num_embeddings", "vocabulary": "num_embeddings",
                "output_dim": "embedding_dim", "dim": "embedding_dim"}
    type_synonyms = ("embed", "token_embedding")

    examples = ((TensorShape((7,), IDS), {"num_embeddings": 20, "embedding_dim": 6}),)
    weights = (WeightTensor("weight", "embeddings"),)

    type: Literal["embedding"]
    num_embeddings: PositiveInt = Field(description="How many token ids there are (the vocabulary's size).")
    embedding_dim: PositiveInt = Field(description="Features of each token's vector.")

    def analyze(self, inp: LayerInput) -> Analysis:
        if layout_of(inp.shape) is not IDS:
            raise ShapeIssue(f"embedding looks up token ids, and {inp.producer} yields {layout_of(inp.shape).kind} "
                             f"{fmt_shape(inp.shape)}", hint="give the network token ids: input: {shape: [L], "
                                                               "layout: ids}")
        return Analysis(output=TensorShape((inp.shape[0], self.embedding_dim), TOKENS),
                        params=self.num_embeddings * self.embedding_dim)


class _Recurrent(Layer):
    """What LSTM and GRU share: a hidden state of ``hidden_size`` carried along a token sequence L×D,
    each step's new state from the token and the last state through ``gates`` gated projections.
    Output: every step's state (L×H, ``return_sequences``) or the last one (H).

    params = gates · H · (D + H) + 2 · gates · H (PyTorch's two biases). MACs = L · gates · H · (D + H).
    """

    gates: ClassVar[int]
    category = "text"
    input_channel_keys = ("input_size",)
    # PyTorch's module returns (outputs, state): forward() takes the outputs, or the last step's
    chains_as_module = False
    synonyms = {"units": "hidden_size", "hidden": "hidden_size", "use_bias": "bias"}

    type: str
    hidden_size: PositiveInt = Field(description="Features of the hidden state.")
    return_sequences: bool = Field(False, description="Every step's state (L×H), not only the last one's (H).")
    bias: bool = Field(True, description="The input and recurrent biases.")

    weights = (WeightTensor("weight_ih_l0", "kernel", to_keras=(1, 0)),
               WeightTensor("weight_hh_l0", "recurrent_kernel", to_keras=(1, 0)),
               WeightTensor("bias_ih_l0", "input_bias", needs="bias"),
               WeightTensor("bias_hh_l0", "recurrent_bias", needs="bias"))

    def analyze(self, inp: LayerInput) -> Analysis:
        require_tokens(inp, f"{self.kind} reads")
        length, features = inp.shape
        hidden, gates = self.hidden_size, self.gates
        output = TensorShape((length, hidden), TOKENS) if self.return_sequences else (hidden,)
        return Analysis(output=output, params=gates * hidden * (features + hidden) + (2 * gates * hidden if self.bias
                                                                                        else 0),
                        # the last step reads every token (and any step every earlier one: the whole, at most)
                        macs=length * gates * hidden * (features + hidden), sees_whole_input=True,
                        resolved={"input_size": features})


class LSTM(_Recurrent):
    """Long short-term memory (PyTorch ``nn.LSTM``): input, forget, cell and output gates, in that
    order in its weights, as Keras orders them too; a cell state beside the hidden state.
    params = 4·H·(D + H) + 8·H."""

    gates = 4
    type_synonyms = ("long_short_term_memory",)

    examples = ((TensorShape((5, 6), TOKENS), {"hidden_size": 4}),
                (TensorShape((4, 3), TOKENS), {"hidden_size": 5, "return_sequences": True}),
                (TensorShape((3, 4), TOKENS), {"hidden_size": 2, "bias": False}))

    type: Literal["lstm"]


class GRU(_Recurrent):
    """Gated recurrent unit (PyTorch ``nn.GRU``): reset, update and new gates, in that order in its
    weights; the reset gate scales the recurrent projection after its bias, as PyTorch computes it
    (Keras' ``reset_after=True``). params = 3·H·(D + H) + 6·H."""

    gates = 3
    type_synonyms = ("gated_recurrent_unit",)

    examples = ((TensorShape((5, 6), TOKENS), {"hidden_size": 4}),
                (TensorShape((4, 3), TOKENS), {"hidden_size": 5, "return_sequences": True}))

    type: Literal["gru"]
