"""Batches for ``model.fit`` / ``model.predict`` from decoded images, on any Keras backend.

Kept apart from :mod:`imgai.data` because it imports Keras (and so the backend framework).

Pixels are served as uint8 (0..255): the models' inputs are float32, so Keras casts them inside
the compiled step, on the device. Converting on the host instead would cost more than the rest of
the loader (gather + float32 conversion: ~12,000 images/s at 224 px on one core, gather alone
~300,000) and would send four times the bytes to an accelerator.
"""

from __future__ import annotations

import math
import threading

import keras
import numpy as np

from imgai.data import decode_image, default_workers, describe_decode_error
from imgai.errors import ImgaiError


class ArrayBatches(keras.utils.PyDataset):
    """Slices a uint8 image array (in RAM or memory-mapped) into batches with one-hot labels.

    Shuffled by a ``numpy`` generator seeded with ``(seed, epoch)``, re-permuted after every
    epoch, so the order is reproducible from the seed whatever the backend, and a resumed run
    (``epoch`` = the number of epochs already done) sees exactly the order it would have seen.
    With ``cache_file`` (a disk cache), rows are
    read from the file into each batch, so the process's memory stays flat however large it is.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        cache_file=None,
        **kwargs,
    ):
        super().__init__(**{"workers": 1, "use_multiprocessing": False, **kwargs})
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.cache_file = cache_file
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

    def _picked(self, index: int) -> np.ndarray:
        picked = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        # Sorted: a faster gather from memory or disk; the order inside a batch does not matter.
        return np.sort(picked) if self.shuffle else picked

    def __getitem__(self, index: int):
        picked = self._picked(index)
        x = (
            self.images[picked] if self.cache_file is None else self.cache_file.read_rows(picked)
        )  # a copy, uint8
        return x, self._eye[self.labels[picked]]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)


class StreamingBatches(ArrayBatches):
    """Decodes each batch from its files while the model trains (``data.cache=none``).

    Keras runs ``__getitem__`` on ``workers`` threads and queues finished batches ahead of the
    model, so decoding overlaps training. A file that cannot be read is left out of its batch
    and added to ``streamed.skipped``.
    """

    def __init__(
        self,
        streamed,
        num_classes: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
    ):
        workers = default_workers(streamed.workers)
        super().__init__(
            None,
            streamed.labels,
            num_classes,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            epoch=epoch,
            workers=workers,
            use_multiprocessing=False,
            max_queue_size=max(4, 2 * workers),
        )
        self.streamed = streamed
        self._lock = threading.Lock()

    def __getitem__(self, index: int):
        s = self.streamed
        rows, keep = [], []
        for i in self._picked(index):
            try:
                rows.append(decode_image(s.paths[i], s.image_size, s.color_mode, s.interpolation))
                keep.append(i)
            except Exception as exc:  # unreadable: skipped and reported, never fatal
                with self._lock:
                    if all(p != s.paths[i] for p, _ in s.skipped):
                        s.skipped.append((s.paths[i], describe_decode_error(exc)))
        if not rows:
            raise ImgaiError(
                f"none of the images of batch {index} could be read "
                f"(first: {s.skipped[-1][0]}): remove the unreadable files"
            )
        return np.stack(rows), self._eye[self.labels[np.asarray(keep)]]
