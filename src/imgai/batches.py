"""Batches for ``model.fit`` / ``model.predict`` from decoded images, on any Keras backend.

Kept apart from :mod:`imgai.data` because it imports Keras (and so the backend framework).
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Slices a uint8 image array into float32 batches with one-hot labels.

    Shuffled with its own ``numpy`` generator, re-permuted after every epoch, so the order is
    reproducible from the seed whatever the backend.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, shuffle: bool = False, seed: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._eye = np.eye(num_classes, dtype=np.float32)
        self._order = self._rng.permutation(len(images)) if shuffle else np.arange(len(images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            picked = np.sort(picked)  # faster gather from memory; order inside a batch does not matter
        x = self.images[picked].astype(np.float32)
        y = self._eye[self.labels[picked]]
        return x, y

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._order = self._rng.permutation(len(self.images))
