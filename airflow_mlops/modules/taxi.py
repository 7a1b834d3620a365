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
