"""Training data for the Keras backend as tf.data pipelines, from the same samples as the torch
backend (netspec.train.sources): grayscale to three channels when the spec wants three, resize
(the shorter side, as torchvision does), random or centre crop, flips, scaling to [0, 1] and
normalization, giving channels-last images for the generated Keras model.

Random crops and flips use stateless random ops seeded by (seed, epoch, sample index), so an
epoch's augmentation does not depend on what ran before it: a resumed run sees the same images.
Image files are decoded by Pillow (as for torch); an undecodable file stops the run with its name.
In-memory images whose transform is deterministic (validation; training without random crops or
flips) are transformed once and kept, so epochs and evaluations gather prepared tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspec.analysis.checker import CheckedNet
from netspec.errors import DataError, UserError
from netspec.language.spec import DataSpec
from netspec.train.sources import (
    PREPARED_LIMIT_BYTES,
    ImageArrays,
    ImageFiles,
    TokenArrays,
    decode_rgb,
    load_sources,
    normalization,
)


@dataclass
class KerasData:
    """Builds the batched tf.data pipelines of one dataset for the Keras trainer."""

    net: CheckedNet
    spec: DataSpec
    train: ImageArrays | ImageFiles
    val: ImageArrays | ImageFiles
    classes: list[str]
    seed: int = 0
    decode_errors: list[UserError] = field(default_factory=list)
    kept: dict[str, Any] = field(default_factory=dict)  # 'train'/'val': transformed images, or None

    def train_batches(self, indices: list[int], epoch: int, batch_size: int):
        """Augmented training batches of these sample indices, in order; labels one-hot."""
        import tensorflow as tf

        classes = len(self.classes)
        prepared = self._prepared("train")
        if prepared is not None:
            return self._gathered(prepared, self.train, indices, batch_size,
                                  lambda labels: tf.one_hot(labels, classes, dtype=tf.float32))
        images = self._images(self.train, tf.constant(np.asarray(indices, dtype=np.int64)))
        base_seed = tf.constant([self.seed, epoch], dtype=tf.int64)

        def prepare(image, label, index):
            seeds = tf.random.experimental.stateless_split(base_seed + [0, 1 + index], 2)
            return (self._transform(image, train=True, seeds=seeds),
                    tf.one_hot(label, classes, dtype=tf.float32))

        return images.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)

    def val_batches(self, batch_size: int):
        """Validation batches, centre-cropped; labels as integers."""
        import tensorflow as tf

        prepared = self._prepared("val")
        if prepared is not None:
            return self._gathered(prepared, self.val, list(range(len(self.val))), batch_size, lambda labels: labels)
        images = self._images(self.val, tf.range(len(self.val), dtype=tf.int64))
        return images.map(lambda image, label, index: (self._transform(image, train=False), label),
                          num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)

    def _prepared(self, split: str):
        """The transformed images of an in-memory split whose transform is deterministic, made once
        and kept (when they fit in PREPARED_LIMIT_BYTES); None for any other split."""
        if split not in self.kept:
            import tensorflow as tf

            source, train = getattr(self, split), split == "train"
            random = self.spec.transform_is_random(train=train)
            size = len(source) * int(np.prod(self.net.input_shape)) * 4
            self.kept[split] = None
            if isinstance(source, ImageArrays) and len(source) and not random and size <= PREPARED_LIMIT_BYTES:
                images = self._images(source, tf.range(len(source), dtype=tf.int64))
                transformed = images.map(lambda image, label, index: self._transform(image, train=train),
                                         num_parallel_calls=tf.data.AUTOTUNE).batch(256)
                self.kept[split] = tf.concat(list(transformed), axis=0)
        return self.kept[split]

    @staticmethod
    def _gathered(prepared, source: ImageArrays | ImageFiles, indices: list[int], batch_size: int, label_form):
        """Batches of kept images and their labels for these indices, in order."""
        import tensorflow as tf

        labels = tf.constant(source.labels)
        chunks = tf.data.Dataset.from_tensor_slices(tf.constant(np.asarray(indices, dtype=np.int64))).batch(batch_size)
        return chunks.map(lambda i: (tf.gather(prepared, i), label_form(tf.gather(labels, i)))).prefetch(2)

    def explain(self, error: Exception) -> UserError:
        """The user-facing error behind a failed pipeline step."""
        if self.decode_errors:
            return self.decode_errors[0]
        return DataError.single(f"the input pipeline failed: {getattr(error, 'message', error)}")

    # --- pipeline pieces -------------------------------------------------------------------------

    def _images(self, source: ImageArrays | ImageFiles, indices):
        """(image HWC uint8, label, index) for each index, in order."""
        import tensorflow as tf

        labels = tf.constant(source.labels)
        dataset = tf.data.Dataset.from_tensor_slices(indices)
        if isinstance(source, ImageArrays):
            images = tf.constant(np.ascontiguousarray(source.images.transpose(0, 2, 3, 1)))
            return dataset.map(lambda i: (tf.gather(images, i), tf.gather(labels, i), i))
        paths = tf.constant(source.paths)

        def decode(path: bytes) -> np.ndarray:
            try:
                return decode_rgb(path.decode())
            except UserError as exc:
                self.decode_errors.append(exc)
                raise ValueError(str(exc)) from None

        def load(i):
            image = tf.numpy_function(decode, [tf.gather(paths, i)], tf.uint8, stateful=False)
            image.set_shape([None, None, 3])
            return image, tf.gather(labels, i), i

        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)

    def _transform(self, image, *, train: bool, seeds=None):
        import tensorflow as tf

        channels, height, width = self.net.input_shape
        data = self.spec
        if image.shape[-1] != channels:  # grayscale for an RGB input (sources checked the pair)
            image = tf.image.grayscale_to_rgb(image)
        image = tf.cast(image, tf.float32)
        if data.resize is not None:
            image = tf.image.resize(image, _shorter_side_to(tf.shape(image), data.resize), antialias=True)
            if train and data.random_crop:
                image = tf.image.stateless_random_crop(image, (height, width, channels), seed=seeds[0])
            else:
                image = _centre_crop(image, height, width)
        else:
            image = tf.image.resize(image, (height, width), antialias=True)
        if train and data.hflip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
        mean, std = (tf.constant(values, tf.float32) for values in normalization(data, channels))
        return (image / 255.0 - mean) / std


def _shorter_side_to(shape, size: int):
    """torchvision's Resize(int): the shorter side becomes ``size``, the longer keeps the aspect ratio."""
    import tensorflow as tf

    height, width = shape[0], shape[1]
    short, long = tf.minimum(height, width), tf.maximum(height, width)
    new_long = tf.cast(size * tf.cast(long, tf.float64) / tf.cast(short, tf.float64), tf.int32)
    return tf.where(height <= width, tf.stack([size, new_long]), tf.stack([new_long, size]))


def _centre_crop(image, height: int, width: int):
    """torchvision's CenterCrop offsets (rounded half-differences)."""
    import tensorflow as tf

    shape = tf.shape(image)
    top = tf.cast(tf.round(tf.cast(shape[0] - height, tf.float32) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(shape[1] - width, tf.float32) / 2), tf.int32)
    return tf.image.crop_to_bounding_box(image, top, left, height, width)


@dataclass
class KerasTokenData:
    """The batched tf.data pipelines of a text dataset: its token id sequences as they are."""

    train: TokenArrays
    val: TokenArrays
    classes: list[str]

    def train_batches(self, indices: list[int], epoch: int, batch_size: int):
        """Training batches of these sample indices, in order; labels one-hot."""
        import tensorflow as tf

        chosen = np.asarray(indices, dtype=np.int64)
        labels = tf.one_hot(self.train.labels[chosen], len(self.classes), dtype=tf.float32)
        return tf.data.Dataset.from_tensor_slices((self.train.ids[chosen].astype(np.int32), labels)).batch(batch_size)

    def val_batches(self, batch_size: int):
        """Validation batches; labels as integers."""
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((self.val.ids.astype(np.int32), self.val.labels)).batch(batch_size)

    def explain(self, error: Exception) -> UserError:
        return DataError.single(f"the input pipeline failed: {getattr(error, 'message', error)}")


def load_data(net: CheckedNet, data: DataSpec, *, seed: int = 0) -> KerasData | KerasTokenData:
    sources = load_sources(net, data, seed=seed)
    if isinstance(sources.train, TokenArrays) and isinstance(sources.val, TokenArrays):
        return KerasTokenData(sources.train, sources.val, sources.classes)
    assert not isinstance(sources.train, TokenArrays) and not isinstance(sources.val, TokenArrays)  # images
    return KerasData(net, data, sources.train, sources.val, sources.classes, seed=seed)
