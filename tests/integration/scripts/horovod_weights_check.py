"""Run by `horovodrun -np 2 --gloo` inside the TFX runtime: train a small Keras model with
horovod.tensorflow and print a hash of the final weights of each rank.

Uses horovod.tensorflow (DistributedGradientTape), not horovod.tensorflow.keras, which with
Keras 3 silently skips gradient averaging.
"""

import hashlib

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

hvd.init()
rng = np.random.default_rng(7)
x = rng.normal(size=(512, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1)) > 0).astype("float32")
shard = slice(hvd.rank(), None, hvd.size())  # each rank sees its own half of the data
dataset = tf.data.Dataset.from_tensor_slices((x[shard], y[shard])).batch(32).repeat()

tf.random.set_seed(100 + hvd.rank())  # different initial weights per rank: the broadcast must fix that
model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])
optimizer = tf.keras.optimizers.SGD(0.05 * hvd.size())
loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)
# Keras 3 variables wrap a tf.Variable in `.value`; Horovod's TensorFlow API needs that one
# (with keras.Variable: 'SymbolicTensor' has no 'assign', and 'Variable' has no 'ref').
hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)

for step, (bx, by) in enumerate(dataset.take(40)):
    with tf.GradientTape() as tape:
        loss = loss_fn(by, model(bx, training=True))
    tape = hvd.DistributedGradientTape(tape)
    grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
print(f"WEIGHTS rank={hvd.rank()} size={hvd.size()} loss={float(loss):.4f} sha256={digest}", flush=True)
