"""layers: DenseGeneral as one 2-D matmul, attention with the custom-JVP softmax; both equal
to the formulations they replace, with their gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hyperprompt_jax import layers

# (input shape, axis, features): q/k/v `[B, L, E] -> [B, L, H, D]`, the attention output
# `[B, L, H, D] -> [B, L, E]`, the MLP `[B, L, E] -> [B, L, F]`, a decode step `[B, 1, E]`.
CASES = {
    "qkv": ((3, 5, 8), -1, (2, 4)),
    "attention_out": ((3, 5, 2, 4), (-2, -1), 8),
    "mlp": ((3, 5, 8), -1, 6),
    "decode_step": ((3, 1, 8), -1, 6),
}


def _reference(inputs, kernel_2d, axis, features):
  """t5x's DenseGeneral: the kernel reshaped to `in + out` and the inputs contracted as is."""
  axis = tuple(a % inputs.ndim for a in np.atleast_1d(axis))
  features = tuple(np.atleast_1d(features))
  kernel = kernel_2d.reshape(tuple(inputs.shape[a] for a in axis) + features)
  return lax.dot_general(inputs, kernel, ((axis, tuple(range(len(axis)))), ((), ())))


@pytest.mark.parametrize("case", list(CASES))
def test_dense_general_equals_t5x_contraction_with_its_gradients(case):
  shape, axis, features = CASES[case]
  dense = layers.DenseGeneral(features=features, axis=axis, kernel_axes=("embed", "mlp"))
  inputs = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
  params = dense.init(jax.random.PRNGKey(1), inputs)["params"]
  cotangent = jax.random.normal(jax.random.PRNGKey(2), dense.apply({"params": params},
                                                                   inputs).shape)

  def ours(kernel, x):
    return jnp.sum(dense.apply({"params": {"kernel": kernel}}, x) * cotangent)

  def t5x(kernel, x):
    return jnp.sum(_reference(x, kernel, axis, features) * cotangent)

  out = dense.apply({"params": params}, inputs)
  want = _reference(inputs, params["kernel"], axis, features)
  assert out.shape == want.shape
  np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
  got_grads = jax.grad(ours, argnums=(0, 1))(params["kernel"], inputs)
  want_grads = jax.grad(t5x, argnums=(0, 1))(params["kernel"], inputs)
  for got, expected in zip(got_grads, want_grads):
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_kernel_gradient_contracts_one_axis():
  """The kernel gradient of a `[B, L, E]` projection is a matmul over the B*L tokens as one
  axis: XLA:CPU compiled the two-axis form with a transposed operand (bench/README.md)."""
  dense = layers.DenseGeneral(features=6, kernel_axes=("embed", "mlp"))
  inputs = jnp.ones((3, 5, 8))
  params = dense.init(jax.random.PRNGKey(0), inputs)["params"]
  grad = jax.grad(lambda p: jnp.sum(dense.apply({"params": p}, inputs) ** 2))
  dots = [e for e in jax.make_jaxpr(grad)(params).jaxpr.eqns if e.primitive.name == "dot_general"]
  assert len(dots) == 2  # the forward and the kernel gradient
  for eqn in dots:
    (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
    assert len(lhs_contracting) == 1, eqn


def test_attention_and_its_gradients_equal_the_exp_over_sum_softmax():
  """dot_product_attention differentiates softmax by its custom JVP; the weights and the
  gradients are those of JAX's default `exp / sum` differentiation, masked keys included."""
  q, k, v = (jax.random.normal(jax.random.PRNGKey(i), (2, 5, 3, 4)) for i in range(3))
  mask = jnp.arange(5)[None, None, None, :] < jnp.array([5, 3])[:, None, None, None]
  bias = jnp.where(mask, 0.0, -1e10) + jax.random.normal(jax.random.PRNGKey(3), (1, 3, 5, 5))
  cotangent = jax.random.normal(jax.random.PRNGKey(4), (2, 5, 3, 4))

  def ours(q, k, v, bias):
    return jnp.sum(layers.dot_product_attention(q, k, v, bias, deterministic=True) * cotangent)

  def default_softmax(q, k, v, bias):
    with jax.softmax_custom_jvp(False):
      return jnp.sum(jnp.einsum("bhqk,bkhd->bqhd",
                                jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias), v)
                     * cotangent)

  np.testing.assert_allclose(ours(q, k, v, bias), default_softmax(q, k, v, bias), rtol=1e-6)
  got = jax.grad(ours, argnums=(0, 1, 2, 3))(q, k, v, bias)
  want = jax.grad(default_softmax, argnums=(0, 1, 2, 3))(q, k, v, bias)
  for name, g, w in zip("qkvb", got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)
