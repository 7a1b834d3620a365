"""The default TFX module file for the Chicago taxi data: is a trip's tip more than 20 % of its fare?

Runs inside the TFX runtime (TensorFlow, TensorFlow Transform), never in Airflow. Use it as
the template for your own module file: ``preprocessing_fn`` is TFX Transform's entry point.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

#: Scaled to z-scores.
DENSE_FLOAT_FEATURES = ["trip_miles", "fare", "trip_seconds"]
#: Bucketized into quantiles.
BUCKET_FEATURES = ["pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude"]
BUCKETS = 10
#: Small integer categories, one-hot friendly as they are.
CATEGORICAL_INT_FEATURES = {"trip_start_hour": 24, "trip_start_day": 8, "trip_start_month": 13}
#: Strings turned into vocabulary ids (top-k, the rest hashed into OOV buckets).
VOCAB_FEATURES = ["payment_type", "company"]
VOCAB_SIZE = 1000
OOV_BUCKETS = 10
LABEL_KEY = "big_tipper"


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def _dense(x, default):
    """A [batch] dense tensor from a dense, sparse or ragged feature, missing values → ``default``."""
    if isinstance(x, tf.sparse.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default, shape=[None, 1])
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    """TFX Transform: features → model inputs, computed over the whole training split."""
    outputs = {}
    for key in DENSE_FLOAT_FEATURES:
        outputs[transformed_name(key)] = tft.scale_to_z_score(_dense(tf.cast(inputs[key], tf.float32), 0.0))
    for key in BUCKET_FEATURES:
        outputs[transformed_name(key)] = tft.bucketize(_dense(tf.cast(inputs[key], tf.float32), 0.0), BUCKETS)
    for key in CATEGORICAL_INT_FEATURES:
        outputs[transformed_name(key)] = _dense(tf.cast(inputs[key], tf.int64), 0)
    for key in VOCAB_FEATURES:
        outputs[transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[key], ""), top_k=VOCAB_SIZE, num_oov_buckets=OOV_BUCKETS
        )
    fare = _dense(tf.cast(inputs["fare"], tf.float32), 0.0)
    tips = _dense(tf.cast(inputs["tips"], tf.float32), 0.0)
    outputs[LABEL_KEY] = tf.cast(tf.greater(tips, tf.multiply(fare, tf.constant(0.2))), tf.int64)
    return outputs


# -- training (TFX Trainer's run_fn, run by every Horovod worker) -----------------------------
RAW_LABEL_KEYS = ("tips",)
BATCH_SIZE = 64
LEARNING_RATE = 0.05


def _model(tf_transform_output):
    import keras

    inputs, parts = {}, []
    for key in DENSE_FLOAT_FEATURES:
        name = transformed_name(key)
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="float32")
        parts.append(inputs[name])
    categorical = {transformed_name(k): BUCKETS + 1 for k in BUCKET_FEATURES}
    categorical.update({transformed_name(k): n for k, n in CATEGORICAL_INT_FEATURES.items()})
    categorical.update({transformed_name(k): VOCAB_SIZE + OOV_BUCKETS for k in VOCAB_FEATURES})
    for name, tokens in categorical.items():
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="int64")
        parts.append(keras.layers.CategoryEncoding(num_tokens=tokens, output_mode="one_hot")(inputs[name]))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.concatenate(parts))
    logits = keras.layers.Dense(1)(hidden)
    return keras.Model(inputs=inputs, outputs=logits)


def _dataset(fn_args, files, tf_transform_output, rank, size):
    from tfx_bsl.public import tfxio

    dataset = fn_args.data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=BATCH_SIZE, label_key=LABEL_KEY, shuffle=True, shuffle_seed=7),
        tf_transform_output.transformed_metadata.schema,
    )
    return dataset.shard(size, rank)  # each worker trains on its own part of every epoch


def _serving_signature(model, tf_transform_output):
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        for key in RAW_LABEL_KEYS:
            spec.pop(key, None)
        features = model.tft_layer(tf.io.parse_example(serialized, spec))
        features.pop(LABEL_KEY, None)
        return {"probabilities": tf.sigmoid(model(features))}

    return serve


def _write_feature_spec(tf_transform_output, serving_model_dir):
    """``assets.extra/feature_spec.json``: the raw features the serving signature reads, so the model
    server can name a missing or mistyped feature in its 400 answer."""
    import json
    import os

    kinds = {tf.float32: "float", tf.int64: "int", tf.string: "string"}
    spec = {}
    for name, feature in tf_transform_output.raw_feature_spec().items():
        if name in RAW_LABEL_KEYS:
            continue
        required = isinstance(feature, tf.io.FixedLenFeature) and feature.default_value is None
        spec[name] = {"dtype": kinds.get(feature.dtype, "string"), "required": required}
    os.makedirs(os.path.join(serving_model_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(serving_model_dir, "assets.extra", "feature_spec.json"), "w") as handle:
        json.dump(spec, handle, indent=2, sort_keys=True)


def _transform_features_signature(model, tf_transform_output):
    """Raw serialized examples (label included) → transformed features: TFMA reads the label here."""

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec()))

    return transform_features


def save_checkpoint(model, checkpoint_dir, step):
    """Write the weights after ``step`` so that a kill at any moment leaves a whole checkpoint.

    Each checkpoint's weights get a file of their own; ``state.json``, replaced atomically once
    they are written, names the one to resume from. A kill while the weights are being written
    leaves a partial file that nothing reads (the next checkpoint removes it).
    """
    import json
    import os

    os.makedirs(checkpoint_dir, exist_ok=True)
    weights = f"step-{step}.weights.h5"
    model.save_weights(os.path.join(checkpoint_dir, weights))
    state_file = os.path.join(checkpoint_dir, "state.json")
    with open(state_file + ".tmp", "w") as handle:
        json.dump({"step": step, "weights": weights}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(state_file + ".tmp", state_file)
    for name in os.listdir(checkpoint_dir):
        if name.endswith(".weights.h5") and name != weights:
            os.remove(os.path.join(checkpoint_dir, name))


def load_checkpoint(model, checkpoint_dir):
    """Load the last whole checkpoint in ``checkpoint_dir`` into ``model``; returns its step (0: none)."""
    import json
    import os

    state_file = os.path.join(checkpoint_dir, "state.json")
    if not os.path.exists(state_file):
        return 0
    with open(state_file) as handle:
        state = json.load(handle)
    model.load_weights(os.path.join(checkpoint_dir, state["weights"]))
    return int(state["step"])


def run_fn(fn_args):
    """TFX Trainer: data-parallel training with Horovod; rank 0 writes checkpoints and the model.

    ``fn_args.custom_config["horovod"]`` holds this worker's ``rank`` and ``size`` and the
    shared ``checkpoint_dir``: a retry of the Trainer task resumes from the last checkpoint there.
    """
    import horovod.tensorflow as hvd
    import keras

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    checkpoint_dir = (fn_args.custom_config or {}).get("horovod", {}).get("checkpoint_dir")
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    keras.utils.set_random_seed(1000 + rank)  # different on purpose: the broadcast must align the ranks
    model = _model(tf_transform_output)
    optimizer = keras.optimizers.SGD(learning_rate=LEARNING_RATE * size)  # scaled by the number of workers
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    steps = max(1, -(-int(fn_args.train_steps) // size))  # the steps are shared between the workers
    start = load_checkpoint(model, checkpoint_dir) if checkpoint_dir else 0
    if start:
        print(f"rank {rank}: resuming from the checkpoint at step {start}/{steps}", flush=True)
    # Keras 3 variables wrap a tf.Variable in .value, which Horovod's TensorFlow API needs.
    hvd.broadcast_variables([v.value for v in model.variables], root_rank=0)
    train = iter(_dataset(fn_args, fn_args.train_files, tf_transform_output, rank, size).repeat())
    every = max(1, steps // 5)
    # rank 0 writes TensorBoard summaries to the model-run directory: tensorboard --logdir <model_run>
    writer = tf.summary.create_file_writer(fn_args.model_run_dir) if rank == 0 else tf.summary.create_noop_writer()
    summary_every = max(1, steps // 100)
    for step in range(start, steps):
        features, labels = next(train)
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.cast(labels, tf.float32), model(features, training=True))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, [v.value for v in model.trainable_variables])
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if (step + 1) % summary_every == 0 or step + 1 == steps:
            with writer.as_default():
                tf.summary.scalar("train/loss", loss, step=(step + 1) * size)  # x axis: steps of all workers
        if (step + 1) % every == 0 or step + 1 == steps:
            print(f"rank {rank}: step {step + 1}/{steps} loss {float(loss):.4f}", flush=True)
            if rank == 0 and checkpoint_dir:
                save_checkpoint(model, checkpoint_dir, step + 1)
    import hashlib

    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.variables)).hexdigest()
    print(f"rank {rank}: final weights sha256 {digest}", flush=True)
    if rank != 0:
        return
    evaluation = _dataset(fn_args, fn_args.eval_files, tf_transform_output, 0, 1).take(max(1, int(fn_args.eval_steps)))
    accuracy = keras.metrics.BinaryAccuracy(threshold=0.0)
    for features, labels in evaluation:
        accuracy.update_state(labels, model(features))
    print(f"rank 0: eval binary accuracy {float(accuracy.result()):.4f}", flush=True)
    with writer.as_default():
        tf.summary.scalar("eval/binary_accuracy", accuracy.result(), step=steps * size)
    writer.flush()
    _write_feature_spec(tf_transform_output, fn_args.serving_model_dir)
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures={
        "serving_default": _serving_signature(model, tf_transform_output),
        "transform_features": _transform_features_signature(model, tf_transform_output),
    })
