"""Adam as Keras' own, with its update in one fused TensorFlow kernel per weight on TensorFlow.

Keras 3 writes Adam's update in ``keras.ops``: about 30 small operations per weight (casts, powers,
two moment updates, a square root, a division). The book's network has 20 weights, so Adam's update
made about 700 of the 1,167 operations of a training step's graph, and at batch 16 a step's fixed
cost is mostly small operations and the threads waiting on one another. TensorFlow has the same
update as one kernel, ``ResourceApplyAdam``; with it a step's graph holds 457 operations, the fixed
cost per step fell from 9.1 to 6.1 CPU ms, and ``train_vae`` at batch 16 in bfloat16 went from 1.29x
to 1.49x the book's images per CPU-second (BENCHMARKS.md, "Training throughput").

The arithmetic is Adam's (Kingma and Ba, with Keras' epsilon outside the square root), equal to
Keras' to rounding; the optimizer's variables, its config and its saved state are Keras' own, so a
run resumes exactly and a model saved with it loads anywhere ``vae_helpers`` is imported. On JAX and
PyTorch, with ``amsgrad``, or under a ``tf.distribute`` strategy it is Keras' Adam unchanged.
"""

from vae_helpers._backend import BACKEND, keras, tf


@keras.saving.register_keras_serializable(package="vae_helpers")
class Adam(keras.optimizers.Adam):
    """``keras.optimizers.Adam``, fused into one kernel per weight on TensorFlow (see the module's docstring)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if BACKEND != "tensorflow" or self.amsgrad or tf.distribute.has_strategy():
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        step = tf.cast(self.iterations + 1, "float32")
        beta_1, beta_2 = tf.constant(self.beta_1, "float32"), tf.constant(self.beta_2, "float32")
        shared = {"beta1_power": tf.pow(beta_1, step), "beta2_power": tf.pow(beta_2, step),
                  "lr": tf.cast(learning_rate, "float32"), "beta1": beta_1, "beta2": beta_2,
                  "epsilon": tf.constant(self.epsilon, "float32")}
        for grad, variable in zip(grads, trainable_variables):
            if variable.dtype != "float32":  # the raw kernel takes its scalars in the weight's dtype
                return super()._backend_update_step(grads, trainable_variables, learning_rate)
        for grad, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=self._momentums[index].handle,
                                         v=self._velocities[index].handle, grad=tf.convert_to_tensor(grad),
                                         use_locking=False, **shared)
        return None
