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

    Several devices and processes (:mod:`imgai.distribute`): ``batch_size`` stays the global batch
    and every process computes the same order; ``shard=(process, processes)`` serves only this
    process's slice of each global batch. ``multiple``: every global batch must split evenly over
    that many devices, so the last, smaller batch of an epoch is cut to a multiple of it (training:
    fewer than ``multiple`` images sit out that epoch, others the next) or, with ``pad``, filled up
    with copies that weigh 0 (validation: every image is scored once) and served with weights.
    """

    def __init__(
        self,
        store,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        shard: tuple[int, int] = (0, 1),
        multiple: int = 1,
        pad: bool = False,
        **kwargs,
    ):
        super().__init__(**{"workers": 1, "use_multiprocessing": False, **kwargs})
        self.shard, self.multiple, self.pad = shard, multiple, pad
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

    def _rows(self) -> int:
        """Images served per epoch: all, or (cut) down to a whole number of device batches."""
        n = len(self.labels)
        return n if self.pad else n - (n % self.batch_size) % self.multiple

    def _weighted(self) -> bool:
        return self.pad and (len(self.labels) % self.batch_size) % self.multiple != 0

    def __len__(self) -> int:
        return math.ceil(self._rows() / self.batch_size)

    def _picked(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's rows of global batch ``index`` and their weights (0 for padding)."""
        picked = self._order[index * self.batch_size : min((index + 1) * self.batch_size, self._rows())]
        # Sorted: a faster gather from memory or disk; the order inside a batch does not matter.
        picked = np.sort(picked) if self.shuffle else picked
        weights = np.ones(len(picked), dtype=np.float32)
        short = -len(picked) % self.multiple if self.pad else 0
        if short:
            picked = np.concatenate([picked, np.repeat(picked[:1], short)])
            weights = np.concatenate([weights, np.zeros(short, dtype=np.float32)])
        process, processes = self.shard
        if processes > 1:  # the global batch divides by the processes
            mine = slice(process * (len(picked) // processes), (process + 1) * (len(picked) // processes))
            picked, weights = picked[mine], weights[mine]
        return picked, weights

    def __getitem__(self, index: int):
        picked, weights = self._picked(index)
        x, kept = self.store.read_rows(picked)
        if len(kept) == 0:  # only a streamed store leaves rows out: files it could not read
            raise ImgaiError(
                f"none of the images of batch {index} could be read "
                f"(first: {self.store.skipped[-1][0]}): remove the unreadable files"
            )
        if len(kept) < len(picked):
            # Unreadable files (streamed store). A batch split over devices must keep its size:
            # their places go to copies of the first readable image, weighing 0 in validation.
            if self.multiple > 1:
                missing = len(picked) - len(kept)
                x = np.concatenate([x, np.repeat(x[:1], missing, axis=0)])
                kept = np.concatenate([np.asarray(kept), np.repeat(np.asarray(kept)[:1], missing)])
                weights = np.concatenate(
                    [np.ones(len(kept) - missing, np.float32), np.zeros(missing, np.float32)]
                )
            else:
                weights = np.ones(len(kept), dtype=np.float32)
        y = self._eye[self.labels[kept]]
        return (x, y, weights) if self._weighted() else (x, y)

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
