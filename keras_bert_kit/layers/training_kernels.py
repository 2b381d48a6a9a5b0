"""Element-wise training kernels: XLA-compiled forward and backward passes.

Outside XLA, TensorFlow runs exact GELU, LayerNorm and dropout as chains
of element-wise ops, forward and (by autodiff) backward, each a pass over
the activations. These kernels give each its hand-written gradient and compile
the forward and backward passes with XLA, so that each is one fused loop.
The backward passes recompute what they need from the inputs instead of
keeping intermediates. On a 2-core CPU a `[4096, 2048]` GELU forward and
backward falls from about 100 to 50 ms, and a `[4096, 512]` LayerNorm from
about 19 to 8 ms. Inside a step that XLA compiles as a whole they are simply
inlined.

They serve training only: at inference TensorFlow's graph optimiser fuses
the plain GELU into the preceding matmul (oneDNN), which a compiled call
would prevent. The layers pick them with their `training` argument.
"""

import math

import tensorflow as tf

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@tf.function(jit_compile=True, reduce_retracing=True)
def _gelu_forward(x):
    return x * (0.5 * tf.math.erfc(-_SQRT_HALF * x))


@tf.function(jit_compile=True, reduce_retracing=True)
def _gelu_backward(x, dy):
    cdf = 0.5 * tf.math.erfc(-_SQRT_HALF * x)
    pdf = _INV_SQRT_2PI * tf.exp(-0.5 * tf.square(x))
    return dy * (cdf + x * pdf)


@tf.custom_gradient
def _gelu(x):
    return _gelu_forward(x), lambda dy: _gelu_backward(x, dy)


# AutoGraph must not rewrite a custom-gradient function's (value, gradient) pair.
@tf.autograph.experimental.do_not_convert
def gelu(x):
    """Exact (erf) GELU, `x * Phi(x)`, equal to `tf.nn.gelu(x, approximate=False)`."""
    return _gelu(x)


def _normalized(x, epsilon):
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    inverse = tf.math.rsqrt(variance + epsilon)
    return centered * inverse, inverse


@tf.function(jit_compile=True, reduce_retracing=True)
def _layer_norm_forward(x, gamma, beta, epsilon):
    normalized, _ = _normalized(tf.cast(x, tf.float32), epsilon)
    return tf.cast(normalized * gamma + beta, x.dtype)


@tf.function(jit_compile=True, reduce_retracing=True)
def _layer_norm_backward(x, gamma, dy, epsilon):
    normalized, inverse = _normalized(tf.cast(x, tf.float32), epsilon)
    dy = tf.cast(dy, tf.float32)
    batch_axes = tf.range(tf.rank(dy) - 1)
    d_gamma = tf.reduce_sum(dy * normalized, axis=batch_axes)
    d_beta = tf.reduce_sum(dy, axis=batch_axes)
    g = dy * gamma
    dx = inverse * (
        g
        - tf.reduce_mean(g, axis=-1, keepdims=True)
        - normalized * tf.reduce_mean(g * normalized, axis=-1, keepdims=True)
    )
    return tf.cast(dx, x.dtype), d_gamma, d_beta


@tf.autograph.experimental.do_not_convert
def layer_norm(x, gamma, beta, epsilon):
    """LayerNorm over the last axis, computed in float32 and returned in `x.dtype`.

    `gamma` and `beta` are float32 `[hidden]` tensors; `epsilon` a float.
    """
    epsilon = tf.constant(epsilon, tf.float32)

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        def grad(dy):
            return _layer_norm_backward(x, gamma, dy, epsilon)

        return _layer_norm_forward(x, gamma, beta, epsilon), grad

    return normalize(x, gamma, beta)


@tf.function(jit_compile=True, reduce_retracing=True)
def _apply_dropout_mask(x, seed, threshold, scale):
    bits = tf.random.stateless_uniform(
        tf.shape(x), seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg="threefry"
    )
    return tf.where(bits >= threshold, x * scale, tf.zeros_like(x))


@tf.autograph.experimental.do_not_convert
def dropout(x, rate, seed):
    """Zeroes a `rate` share of `x` and scales the rest so the expectation is `x`.

    The keep mask compares raw 32-bit ThreeFry integers, drawn from the
    stateless `seed` (int `[2]`), with `rate * 2**32`; the scale is the
    inverse of the keep probability that threshold realises. The backward
    pass draws the same mask again from the seed instead of keeping it.
    """
    bits = 2**32
    threshold = min(round(rate * bits), bits - 1)
    scale = tf.constant(bits / (bits - threshold), x.dtype)
    threshold = tf.constant(threshold, tf.uint32)

    @tf.custom_gradient
    def drop(x):
        def grad(dy):
            return _apply_dropout_mask(dy, seed, threshold, scale)

        return _apply_dropout_mask(x, seed, threshold, scale), grad

    return drop(x)
