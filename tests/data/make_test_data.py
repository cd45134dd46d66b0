"""Rebuild the real-data slices in tests/data from the full datasets (run once by hand).

usage: python tests/data/make_test_data.py /path/to/shared/data
Writes mitdb/208 and mitdb-pvc/119 (first 3 minutes, WFDB, original ADC values and
annotations), fashion-mnist/ (40 train and 20 test images per class, IDX)
and fsdd/ (18 WAVs copied unchanged). See PROVENANCE.md.
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import wfdb

from modalities.image import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx, write_idx

SECONDS = 180
FASHION_PER_CLASS = {"train": 40, "t10k": 20}
FSDD_FILES = [f"{d}_{s}_{i}.wav" for d in (0, 1, 2) for s in ("george", "jackson", "theo") for i in (0, 1)]


def slice_record(src: Path, ext: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rec = wfdb.rdrecord(str(src), physical=False)
    n = int(SECONDS * rec.fs)
    ann = wfdb.rdann(str(src), ext, sampto=n - 1)
    wfdb.wrsamp(
        rec.record_name,
        fs=rec.fs,
        units=rec.units,
        sig_name=rec.sig_name,
        d_signal=rec.d_signal[:n],
        fmt=rec.fmt,
        adc_gain=rec.adc_gain,
        baseline=rec.baseline,
        comments=[f"first {SECONDS} s of MIT-BIH Arrhythmia Database record {rec.record_name} (ODC-By 1.0)"],
        write_dir=str(out_dir),
    )
    wfdb.wrann(
        rec.record_name,
        ext,
        np.asarray(ann.sample),
        symbol=ann.symbol,
        subtype=np.asarray(ann.subtype),
        chan=np.asarray(ann.chan),
        num=np.asarray(ann.num),
        aux_note=ann.aux_note,
        fs=rec.fs,
        write_dir=str(out_dir),
    )


def slice_fashion_mnist(src: Path, out_dir: Path) -> None:
    """The first N images of each class, in the original IDX layout (gzip)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stem, per_class in FASHION_PER_CLASS.items():
        images = read_idx(src / f"{stem}-images-idx3-ubyte.gz", IDX_IMAGES_MAGIC)
        labels = read_idx(src / f"{stem}-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC)
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
        write_idx(out_dir / f"{stem}-images-idx3-ubyte.gz", images[keep])
        write_idx(out_dir / f"{stem}-labels-idx1-ubyte.gz", labels[keep])


def main(shared: Path) -> None:
    here = Path(__file__).parent
    slice_record(shared / "mitdb" / "208", "atr", here / "mitdb")
    slice_record(shared / "mitdb-mlii-pvc" / "119", "pvc", here / "mitdb-pvc")
    slice_fashion_mnist(shared / "fashion-mnist", here / "fashion-mnist")
    (here / "fsdd").mkdir(exist_ok=True)
    for name in FSDD_FILES:
        shutil.copyfile(shared / "fsdd" / "recordings" / name, here / "fsdd" / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
