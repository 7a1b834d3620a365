"""Run inside the TFX runtime: a checkpoint write killed half-way leaves the previous one loadable.

Saves a checkpoint at step 400 with the shipped module's ``save_checkpoint``, then starts the
checkpoint of step 800 in a child process that is killed (SIGKILL) once part of the weights file
is on disk. ``load_checkpoint`` into a fresh model must give step 400 and exactly its weights.
Prints ``CHECKPOINT step=<n> same=<bool>``.
"""

import os
import signal
import sys

import numpy as np
import tensorflow as tf

from airflow_mlops.runtime_side.modules import taxi


def model(seed):
    tf.random.set_seed(seed)
    return tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(64), tf.keras.layers.Dense(1)])


checkpoint_dir = sys.argv[1]
first = model(1)
taxi.save_checkpoint(first, checkpoint_dir, 400)
saved = [v.numpy().copy() for v in first.variables]

second = model(2)
pid = os.fork()
if pid == 0:  # the checkpoint of step 800, killed while its weights are being written
    real = second.save_weights

    def save_weights_then_die(path, *args, **kwargs):
        real(path, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)  # what a kill mid-write leaves behind
        os.kill(os.getpid(), signal.SIGKILL)

    second.save_weights = save_weights_then_die
    taxi.save_checkpoint(second, checkpoint_dir, 800)
    os._exit(0)  # not reached
_, status = os.waitpid(pid, 0)
assert os.WIFSIGNALED(status), status
print("LEFT", sorted(os.listdir(checkpoint_dir)), flush=True)

resumed = model(3)
step = taxi.load_checkpoint(resumed, checkpoint_dir)
same = all(np.array_equal(a, v.numpy()) for a, v in zip(saved, resumed.variables))
print(f"CHECKPOINT step={step} same={same}", flush=True)
