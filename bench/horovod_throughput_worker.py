"""Run under horovodrun inside the TFX runtime: samples/s of a compute-bound MLP, per world size."""

import json
import sys
import time

import horovod.tensorflow as hvd
import keras
import tensorflow as tf

hvd.init()
width, batch, steps, warmup = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), 5
keras.utils.set_random_seed(hvd.rank())
model = keras.Sequential([keras.Input((width,)), *[keras.layers.Dense(width, activation="relu") for _ in range(3)],
                          keras.layers.Dense(1)])
optimizer = keras.optimizers.SGD(0.001 * hvd.size())
x = tf.random.normal((batch, width))
y = tf.cast(tf.random.uniform((batch, 1)) > 0.5, tf.float32)
loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)


@tf.function
def step():
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    tape = hvd.DistributedGradientTape(tape)
    grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss


for _ in range(warmup):
    step()
started = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - started
if hvd.rank() == 0:
    print("RESULT " + json.dumps({"workers": hvd.size(), "samples_per_s": round(batch * steps * hvd.size() / seconds, 1),
                                  "step_ms": round(1000 * seconds / steps, 2)}), flush=True)
