"""Batches for ``model.fit`` / ``model.predict`` from an image store, on any Keras backend.

Kept apart from :mod:`imgai.data` because it imports Keras (and so the backend framework). It
knows nothing of where the pixels live: an image store (:class:`imgai.data.DecodedImages` in
memory, :class:`imgai.cache.CachedImages` on disk, :class:`imgai.cache.StreamedImages` decoded
per batch) hands over rows through ``read_rows`` and makes its batches with ``store.batches()``.

Pixels are served as uint8 (0..255): the models' inputs are float32, so Keras casts them inside
the compiled step, on the device. Converting on the host instead would cost more than the rest of
the loader (docs/performance.md, "Batches") and would send four times the bytes to an accelerator.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from imgai.errors import ImgaiError


class ImageBatches(keras.utils.PyDataset):
    """Batches of rows of ``store`` with one-hot labels.

    Shuffled by a ``numpy`` generator seeded with ``(seed, epoch)``, re-permuted for every
    epoch, so the order is reproducible from the seed whatever the backend, and a resumed run
    (``epoch`` = the number of epochs already done) sees exactly the order it would have seen.

    The epoch is written in one place, :meth:`set_epoch`: training calls it with Keras's epoch
    number before each epoch (Keras also calls ``on_epoch_end`` when ``fit`` starts, so counting
    those calls alone would run one epoch ahead); ``on_epoch_end`` moves on to the next epoch for
    use outside imgai's training loop.
    """

    def __init__(
        self,
        store,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        **kwargs,
    ):
        super().__init__(**{"workers": 1, "use_multiprocessing": False, **kwargs})
        self.store = store
        self.labels = np.asarray(store.labels, dtype=np.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self._eye = np.eye(num_classes, dtype=np.float32)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Serve the order of epoch ``epoch`` (counted from 0)."""
        self.epoch = epoch
        n = len(self.labels)
        self._order = (
            np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        )

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        # Sorted: a faster gather from memory or disk; the order inside a batch does not matter.
        x, kept = self.store.read_rows(np.sort(picked) if self.shuffle else picked)
        if len(kept) == 0:  # only a streamed store leaves rows out: files it could not read
            raise ImgaiError(
                f"none of the images of batch {index} could be read "
                f"(first: {self.store.skipped[-1][0]}): remove the unreadable files"
            )
        return x, self._eye[self.labels[kept]]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
