"""Models. Every model returns logits; temperature lives in losses and labeling.

`cleverhans_cnn` is the MNIST CNN of cleverhans v1 (`make_basic_cnn`), the
architecture used by Papernot & McDaniel (2017), with dropout before the first
convolution and before the classifier so that MC-dropout has something to sample.
"""

import keras

# Layer names are part of the saved-model format; keep them stable.
CLEVERHANS_CNN_PARAMS_10 = 710_218


def cleverhans_cnn(num_classes=10, input_shape=(28, 28, 1), *,
                   input_dropout=0.2, hidden_dropout=0.5, name="cleverhans_cnn"):
    """Dropout 0.2 -> Conv 64 8x8/2 same -> ReLU -> Conv 128 6x6/2 valid -> ReLU
    -> Conv 128 5x5/1 valid -> ReLU -> Dropout 0.5 -> Flatten -> Dense (logits).

    Args:
      num_classes: number of logits, e.g. 10, or 11 with the outlier class.
      input_shape: (height, width, channels); 28x28x1 for MNIST, 32x32x3 works.
      input_dropout, hidden_dropout: dropout rates (0 disables the layer's effect).
    Returns:
      An uncompiled `keras.Model` mapping float32 NHWC images in [0, 1] to logits.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r}: need at least 2 classes")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={tuple(input_shape)!r}: need (height, width, channels)")
    for rate_name, rate in (("input_dropout", input_dropout), ("hidden_dropout", hidden_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{rate_name}={rate!r}: allowed range is [0, 1)")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(inputs)
    x = keras.layers.Conv2D(64, 8, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(128, 6, strides=2, padding="valid", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(128, 5, strides=1, padding="valid", activation="relu", name="conv3")(x)
    x = keras.layers.Dropout(hidden_dropout, name="hidden_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(int(num_classes), name="logits")(x)
    return keras.Model(inputs, logits, name=name)
