"""An independent Keras rendering of checked layers (channels-last), used as an oracle for the
checker's shapes and parameter counts, 'same' padding included."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


class _LRN(keras.layers.Layer):
    def __init__(self, size, alpha, beta, k, **kwargs):
        super().__init__(**kwargs)
        self.args = dict(depth_radius=(size - 1) // 2, bias=k, alpha=alpha / size, beta=beta)

    def call(self, x):
        return tf.nn.local_response_normalization(x, **self.args)


def _window_padding(pads, spec_padding):
    if spec_padding == "same":
        return [], "same"
    top, bottom, left, right = pads
    if top or bottom or left or right:
        return [keras.layers.ZeroPadding2D(((top, bottom), (left, right)))], "valid"
    return [], "valid"


def keras_layers(checked) -> list:
    layer, res, kind = checked.layer, checked.resolved, checked.type
    if kind == "conv2d":
        pre, padding = _window_padding(res["padding"], layer.padding)
        return pre + [keras.layers.Conv2D(layer.out_channels, layer.kernel_size, layer.stride, padding,
                                          dilation_rate=layer.dilation, groups=layer.groups, use_bias=layer.bias,
                                          activation=layer.activation)]
    if kind == "maxpool2d":
        assert not layer.ceil_mode and not any(res["padding"]) or layer.padding == "same"
        return [keras.layers.MaxPooling2D(layer.kernel_size, res["stride"],
                                          "same" if layer.padding == "same" else "valid")]
    if kind == "adaptive_avgpool2d":
        h, w = res["input_hw"]
        oh, ow = layer.output_size
        if h % oh == 0 and w % ow == 0:
            return [keras.layers.AveragePooling2D((h // oh, w // ow))]
        return [keras.layers.AdaptiveAveragePooling2D((oh, ow))]
    if kind == "lrn":
        return [_LRN(layer.size, layer.alpha, layer.beta, layer.k)]
    if kind == "dropout":
        return [keras.layers.Dropout(layer.p)]
    if kind == "flatten":
        return [keras.layers.Flatten()]
    if kind == "linear":
        return [keras.layers.Dense(layer.out_features, activation=layer.activation, use_bias=layer.bias)]
    if kind == "relu":
        return [keras.layers.ReLU()]
    raise AssertionError(f"no keras reference for layer type {kind!r}")


def run_keras(net):
    """Per-layer (output shape channels-first, params) measured in Keras."""
    c, h, w = net.input_shape
    x = np.random.default_rng(0).standard_normal((1, h, w, c)).astype("float32")
    measured = []
    for checked in net.layers:
        layers = keras_layers(checked)
        for layer in layers:
            x = layer(x)
        params = sum(layer.count_params() for layer in layers)
        shape = tuple(x.shape[1:])
        if len(shape) == 3:
            shape = (shape[2], shape[0], shape[1])
        measured.append((shape, params))
    return measured
