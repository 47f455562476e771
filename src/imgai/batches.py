"""Batches for ``model.fit`` / ``model.predict`` from decoded images, on any Keras backend.

Kept apart from :mod:`imgai.data` because it imports Keras (and so the backend framework).
"""

from __future__ import annotations

import math

import keras
import numpy as np


class ArrayBatches(keras.utils.PyDataset):
    """Slices a uint8 image array into float32 batches with one-hot labels.

    Shuffled by a ``numpy`` generator seeded with ``(seed, epoch)``, re-permuted after every
    epoch, so the order is reproducible from the seed whatever the backend, and a resumed run
    (``epoch`` = the number of epochs already done) sees exactly the order it would have seen.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._eye = np.eye(num_classes, dtype=np.float32)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Serve the order of epoch ``epoch`` (counted from 0)."""
        self.epoch = epoch
        n = len(self.images)
        self._order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

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
        self.set_epoch(self.epoch + 1)
