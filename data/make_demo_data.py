"""Rebuild the demo's bundled ECG: the first 10 minutes of eight MIT-BIH records (run once by hand).

usage: python data/make_demo_data.py /path/to/mitdb-mlii-pvc
The slices are written with wfdb from the original ADC values, with their `pvc`
annotations, so they read back bit-identical to the first 10 minutes of the source.
"""

import sys
from pathlib import Path

import wfdb

MINUTES = 10
RECORDS = ("100", "105", "108", "116", "121", "123", "119", "200")


def slice_record(source: Path, out_dir: Path) -> None:
    record = wfdb.rdrecord(str(source), physical=False)
    n = MINUTES * 60 * int(record.fs)
    ann = wfdb.rdann(str(source), "pvc", sampto=n - 1)
    wfdb.wrsamp(record.record_name, fs=record.fs, units=record.units, sig_name=record.sig_name,
                d_signal=record.d_signal[:n], fmt=record.fmt, adc_gain=record.adc_gain, baseline=record.baseline,
                comments=[f"first {MINUTES} min of MIT-BIH Arrhythmia Database record {record.record_name} (ODC-By 1.0)"],
                write_dir=str(out_dir))
    wfdb.wrann(record.record_name, "pvc", ann.sample, symbol=ann.symbol, fs=record.fs, write_dir=str(out_dir))


if __name__ == "__main__":
    out = Path(__file__).parent / "mitdb-mlii-pvc"
    out.mkdir(exist_ok=True)
    for name in RECORDS:
        slice_record(Path(sys.argv[1]) / name, out)
