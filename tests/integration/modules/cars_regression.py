"""A TFX module file for a regression model, written as a TFX user would, not for airflow-mlops.

The Vega "cars" data set (``vega_datasets``): miles per gallon from cylinders, displacement,
horsepower, weight, acceleration and origin. A plain Keras ``run_fn`` (no Horovod), serving and
``transform_features`` signatures as in TFX's own examples.
"""

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

NUMERIC = ["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]
CATEGORICAL = ["Origin"]
LABEL = "Miles_per_Gallon"


def xf(key):
    return key + "_xf"


def preprocessing_fn(inputs):
    outputs = {}
    for key in NUMERIC:
        outputs[xf(key)] = tft.scale_to_z_score(tf.cast(inputs[key], tf.float32))
    for key in CATEGORICAL:
        outputs[xf(key)] = tf.cast(tft.compute_and_apply_vocabulary(inputs[key], num_oov_buckets=1), tf.float32)
    outputs[xf(LABEL)] = tf.cast(inputs[LABEL], tf.float32)
    return outputs


def _dataset(files, data_accessor, tf_transform_output, batch_size):
    return data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=xf(LABEL)),
        tf_transform_output.transformed_metadata.schema).repeat()


def _model():
    inputs = [tf.keras.layers.Input(shape=(1,), name=xf(key)) for key in NUMERIC + CATEGORICAL]
    x = tf.keras.layers.concatenate(inputs)
    x = tf.keras.layers.Dense(16, activation="relu")(x)
    output = tf.keras.layers.Dense(1)(x)
    model = tf.keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05), loss="mean_squared_error")
    return model


def run_fn(fn_args: tfx.components.FnArgs):
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, 32)
    model = _model()
    model.fit(train, steps_per_epoch=fn_args.train_steps, epochs=1)
    model.tft_layer = tf_transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve(serialized):
        spec = tf_transform_output.raw_feature_spec()
        spec.pop(LABEL)
        features = model.tft_layer(tf.io.parse_example(serialized, spec))
        return {"mpg": model([features[xf(key)] for key in NUMERIC + CATEGORICAL])}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform_features(serialized):
        return model.tft_layer(tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec()))

    tf.saved_model.save(model, fn_args.serving_model_dir,
                        signatures={"serving_default": serve, "transform_features": transform_features})
