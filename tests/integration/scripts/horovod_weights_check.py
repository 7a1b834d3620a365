"""Run by `horovodrun -np 2 --gloo` inside the TFX runtime: train a small Keras model with
horovod.tensorflow and print a hash of the final weights of each rank.

Uses horovod.tensorflow (DistributedGradientTape), not horovod.tensorflow.keras, which with
Keras 3 silently skips gradient averaging. At the first step it also checks that the
gradient each rank applies is the mean of the ranks' local gradients. With the argument
``local`` (the negative control) each rank applies its own gradient: the ranks must diverge,
which shows the identical-weights check can fail.
"""

import hashlib
import sys

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

averaged = sys.argv[1:] != ["local"]
for step, (bx, by) in enumerate(dataset.take(40)):
    with tf.GradientTape(persistent=True) as tape:
        loss = loss_fn(by, model(bx, training=True))
    variables = [v.value for v in model.trainable_variables]
    local = tape.gradient(loss, variables)
    grads = hvd.DistributedGradientTape(tape).gradient(loss, variables) if averaged else local
    if step == 0 and averaged:
        mean = [hvd.allgather(tf.expand_dims(g, 0)).numpy().mean(axis=0) for g in local]
        ok = all(np.allclose(g.numpy(), m, rtol=1e-5, atol=1e-7) for g, m in zip(grads, mean, strict=True))
        differs = any(not np.allclose(g.numpy(), m) for g, m in zip(local, mean, strict=True))
        print(f"GRADCHECK rank={hvd.rank()} averaged={ok} local_differs={differs}", flush=True)
    del tape
    optimizer.apply_gradients(zip(grads, model.trainable_variables))

digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
print(f"WEIGHTS rank={hvd.rank()} size={hvd.size()} loss={float(loss):.4f} sha256={digest}", flush=True)
