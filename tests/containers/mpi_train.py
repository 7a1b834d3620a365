"""The Horovod training of tests/containers/test_mpi.py; it runs in the tfx image (TensorFlow, Horovod, Gloo).

``python mpi_train.py launch WORKERS STEPS [--elastic] [--pause S]`` starts the ranks as the provider's Horovod
trainer does (``HorovodTrainerExecutor.Do``): ``python -m horovod.runner.launch`` with
:func:`~airflow_mlops.runtime_side.steps.horovod_launch.horovodrun_args` (on an MPIJob's launcher: over the
operator's hostfile or, elastic, its ``discover_hosts.sh``, from the ``AIRFLOW_MLOPS_HOROVOD_*`` variables of
``horovod_env``; elsewhere ``WORKERS`` ranks on this machine), each rank's output through ``LaunchLog``, whose
``failure`` is printed when horovodrun fails. Each rank then runs ``python mpi_train.py STEPS ...``: a small Keras
model trained ``STEPS`` steps with ``hvd.DistributedGradientTape`` (each rank on its own batches; the averaged
gradient keeps every rank's weights the same), and prints::

    START rank=R size=N host=H
    STEP step=S rank=R size=N host=H        (every 10 steps; elastic: at each commit, every 5)
    RESET rank=R size=N host=H              (elastic: the world changed, training goes on from the last commit)
    FINAL rank=R size=N host=H steps=S seconds=T sha256=D

``--elastic`` trains under ``hvd.elastic.run`` with a ``TensorFlowState`` committed every 5 steps;
``--pause S`` sleeps S seconds after each step (a training long enough to remove a worker in the middle).
"""

from __future__ import annotations

import os
import subprocess
import sys


def launch(workers: int, rank_args: list[str]) -> int:
    from airflow_mlops.runtime_side.steps.horovod_launch import LaunchLog, horovodrun_args

    command = [sys.executable, "-m", "horovod.runner.launch", *horovodrun_args(workers, os.environ),
               sys.executable, os.path.abspath(__file__), *rank_args]
    print("LAUNCH " + " ".join(command), flush=True)
    log = LaunchLog()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        log.add(line.rstrip("\n"))
        print(line, end="", flush=True)
    code = proc.wait()
    if code:
        print("FAILED " + log.failure(workers, code), flush=True)
    return code


def train(steps: int, elastic: bool, pause: float) -> None:
    import hashlib
    import socket
    import time

    import horovod.tensorflow as hvd
    import numpy as np
    import tensorflow as tf

    host = socket.gethostname()
    hvd.init()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1024, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) > 0).astype("float32")
    batch = 32
    tf.keras.utils.set_random_seed(100 + hvd.rank())  # different initial weights per rank: the broadcast fixes that
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(1)])
    optimizer = tf.keras.optimizers.SGD(0.05)
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    # Keras 3 variables wrap a tf.Variable in `.value`: Horovod's TensorFlow API needs that one
    variables = [v.value for v in model.variables]

    def say(what: str, **fields: object) -> None:
        extra = "".join(f" {k}={v}" for k, v in fields.items())
        print(f"{what} rank={hvd.rank()} size={hvd.size()} host={host}{extra}", flush=True)

    def step(number: int) -> None:
        rows = (np.arange(batch) + (number * hvd.size() + hvd.rank()) * batch) % len(x)  # this rank's own batch
        with tf.GradientTape() as tape:
            loss = loss_fn(y[rows], model(x[rows], training=True))
        grads = hvd.DistributedGradientTape(tape).gradient(loss, [v.value for v in model.trainable_variables])
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if pause:
            time.sleep(pause)

    say("START")
    started = time.monotonic()
    if elastic:
        state = hvd.elastic.TensorFlowState(variables=variables, step=0)
        state.register_reset_callbacks([lambda: say("RESET")])

        @hvd.elastic.run
        def run(state: hvd.elastic.TensorFlowState) -> None:
            # TensorFlowState.sync broadcasts only its Python attributes in eager mode: the weights too
            hvd.broadcast_variables(variables, root_rank=0)
            while state.step < steps:
                step(state.step)
                state.step += 1
                if state.step % 5 == 0:
                    state.commit()
                    say("STEP", step=state.step)

        run(state)
    else:
        hvd.broadcast_variables(variables, root_rank=0)
        for number in range(steps):
            step(number)
            if (number + 1) % 10 == 0:
                say("STEP", step=number + 1)
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
    say("FINAL", steps=steps, seconds=f"{time.monotonic() - started:.2f}", sha256=digest)


def main(argv: list[str]) -> int:
    if argv[0] == "launch":
        return launch(int(argv[1]), argv[2:])
    pause = float(argv[argv.index("--pause") + 1]) if "--pause" in argv else 0.0
    train(int(argv[0]), "--elastic" in argv, pause)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
