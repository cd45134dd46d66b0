"""ECG records (WFDB) -> beat-centred or sliding windows, labelled with the AAMI convention.

Beats come from the reference annotation file when it exists, otherwise from a
Pan-Tompkins-like R-peak detector, so unannotated recordings (a live stream) are cut
the same way as the training data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .base import Modality, Windows, first_failures, has_run, progress, sliding_range

if TYPE_CHECKING:  # wfdb and scipy.signal load records; a scorer, which only prepares windows, never imports them
    import wfdb

#: every WFDB beat-annotation symbol; anything else (+, ~, |, ", x, !, [, ], ...) is not a beat
BEAT_SYMBOLS = "NLRBAaJSVrFejnE/fQ?"
#: (normal symbols, anomalous symbols) per annotation extension; None = every other beat symbol.
#: In the `pvc` annotations (tpcp export of MIT-BIH) 'V' marks a PVC and 'Q' every other beat.
DEFAULT_SYMBOLS: dict[str, tuple[str, str | None]] = {"atr": ("NLRej", None), "pvc": ("Q", "V")}
_RECORD_SUFFIXES = {".hea", ".dat", ".mat", ".atr"}
#: signal-quality checks, in the order a window's reason is chosen
QUALITY_CHECKS = ("flatline", "clipping", "amplitude")
#: bytes per sample of the WFDB storage formats; the FLAC-compressed ones (5xx) have no fixed size
BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3,
                    "311": 4 / 3}


class ECGModality(Modality):
    """Windows of multi-lead ECG in physical units (mV), resampled to `fs`.

    mode="beats": one window per beat, `window_s` long with `pre_fraction` of it before
    the R peak (0.8 s at 360 Hz = 288 samples, 115 before the peak: covers P wave to T
    wave at normal rates, and 288 = 9 * 2**5 suits strided convolutions). Beats whose
    window would cross the record's ends are skipped.
    mode="sliding": windows every `stride_s`, for continuous scoring of a raw stream; a
    window is anomalous when an anomalous beat's R peak lies in its central half (the
    default stride of half a window makes the central halves tile the signal).

    Labels: beats in `normal_symbols` -> 0, beats in `anomaly_symbols` -> 1 (None = every
    other beat symbol, the AAMI view where S, V, F and Q classes are all anomalous).
    Beats in neither set are dropped by default (`other="drop"`), e.g. with
    anomaly_symbols="V" the A/F/paced beats vanish instead of polluting either class;
    other="normal" / "anomaly" keeps them with that label. Defaults depend on `ann`:
    "atr" -> normal "NLRej", anomalous = all other beats; "pvc" -> normal "Q", anomalous "V".

    Annotations: `ann` is the annotation file extension. If the default "atr" file is
    absent the R-peak detector is used and labels are unknown (y=None); an absent file
    for any other explicitly chosen extension is an error; ann=None always detects.
    The detector runs on the first selected lead.

    Signal quality (`quality_issues`, checked on raw windows before scoring; each check can
    be left out of `quality_checks`):
    - "flatline": a lead stays within `flat_tolerance_mv` (0.02 mV) for `flat_min_s` (0.2 s)
      or longer: lead off, asystole, a dead channel;
    - "clipping": a lead sits at its window maximum or minimum (within `clip_tolerance_mv`,
      0.001 mV: identical samples) for `clip_min_s` (0.03 s) or longer: ADC saturation;
    - "amplitude": a lead's peak-to-peak amplitude lies outside the range seen in training
      (0.5th to 99.5th percentile, learned by `fit_quality`) widened by `amplitude_margin`
      (x3 either way). Models saved before this check have no range; it is skipped for them.
    On the MIT-BIH slices in tests/data (records 119 and 208, beats and sliding windows,
    360 and 180 Hz) no real window fails the flatline or clipping check at these defaults.
    """

    name = "ecg"
    #: without the pseudo-anomaly term (λ_adcon = 0, no auxiliary BN): on MIT-BIH DS1 patients held
    #: out for validation it tied the full AGAD on V beats (AUROC 0.927 vs 0.926 without labels,
    #: 0.948-0.954 vs 0.943-0.949 with 20-100) and ranked S and F beats higher (0.729 / 0.786 vs
    #: 0.706 / 0.753), at about 2/3 of the fit time (docs/with-labels.md, --split validation)
    agad_defaults = {"lambda_adcon": 0.0, "aux_bn": False}

    def __init__(
        self,
        fs: float = 360.0,
        leads: Sequence[str | int] | None = None,
        window_s: float = 0.8,
        pre_fraction: float = 0.4,
        mode: str = "beats",
        stride_s: float = 0.4,
        ann: str | None = "atr",
        normal_symbols: str | None = None,
        anomaly_symbols: str | None = None,
        other: str = "drop",
        verbose: bool = False,
        quality_checks: Sequence[str] = QUALITY_CHECKS,
        flat_tolerance_mv: float = 0.02,
        flat_min_s: float = 0.2,
        clip_tolerance_mv: float = 0.001,
        clip_min_s: float = 0.03,
        amplitude_margin: float = 3.0,
    ) -> None:
        self.fs = fs
        self.leads = leads
        self.window_s = window_s
        self.pre_fraction = pre_fraction
        self.mode = mode
        self.stride_s = stride_s
        self.ann = ann
        self.normal_symbols = normal_symbols
        self.anomaly_symbols = anomaly_symbols
        self.other = other
        self.verbose = verbose
        self.quality_checks = tuple(quality_checks)
        self.flat_tolerance_mv = flat_tolerance_mv
        self.flat_min_s = flat_min_s
        self.clip_tolerance_mv = clip_tolerance_mv
        self.clip_min_s = clip_min_s
        self.amplitude_margin = amplitude_margin

    @property
    def window_len(self) -> int:
        return int(round(self.window_s * self.fs))

    @property
    def pre_samples(self) -> int:
        return int(round(self.pre_fraction * self.window_len))

    @property
    def raw_shape(self) -> tuple[int | None, ...]:
        n_channels = len(self.leads) if self.leads is not None else getattr(self, "n_channels_", None)
        return (n_channels, self.window_len)

    def symbol_sets(self) -> tuple[str, str]:
        """(normal, anomalous) beat symbols after applying the per-extension defaults."""
        normal_default, anomaly_default = DEFAULT_SYMBOLS.get(self.ann or "atr", DEFAULT_SYMBOLS["atr"])
        normal = self.normal_symbols if self.normal_symbols is not None else normal_default
        anomaly = self.anomaly_symbols if self.anomaly_symbols is not None else anomaly_default
        if anomaly is None:
            anomaly = "".join(s for s in BEAT_SYMBOLS if s not in normal)
        overlap = set(normal) & set(anomaly)
        if overlap:
            raise ValueError(f"symbols {sorted(overlap)} are both normal and anomalous")
        return normal, anomaly

    def _check_settings(self) -> None:
        if self.mode not in ("beats", "sliding"):
            raise ValueError(f"mode must be 'beats' or 'sliding', got {self.mode!r}")
        if self.other not in ("drop", "normal", "anomaly"):
            raise ValueError(f"other must be 'drop', 'normal' or 'anomaly', got {self.other!r}")
        if self.fs <= 0 or self.window_len < 2:
            raise ValueError(f"fs={self.fs} and window_s={self.window_s} give no usable window")
        if not 0.0 <= self.pre_fraction <= 1.0:
            raise ValueError(f"pre_fraction must lie in [0, 1], got {self.pre_fraction}")
        if self.mode == "sliding" and round(self.stride_s * self.fs) < 1:
            raise ValueError(f"stride_s={self.stride_s} is shorter than one sample at fs={self.fs}")
        self.symbol_sets()

    def load(self, path: str | Path, records: Sequence[str] | None = None) -> Windows:
        """Windows from one record (path with or without extension) or a directory of records.

        records: names of records to read from the directory (default: every .hea there).
        """
        self._check_settings()
        bases = find_records(path, records)
        parts = [self._load_record(b) for b in progress(bases, self.verbose, "ECG records")]
        n_channels = {p.X.shape[1] for p in parts}
        if len(n_channels) > 1:
            raise ValueError(
                f"records under {path} have different numbers of leads {sorted(n_channels)}; choose `leads`"
            )
        self.n_channels_ = n_channels.pop()
        return Windows.concat(parts)

    def read_record(self, base: str | Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(signal [T, C] in mV at `fs`, annotation samples at `fs` or None, their symbols or None)."""
        import wfdb
        from scipy.signal import resample_poly

        base = str(base)
        header = wfdb.rdheader(base)
        check_record_files(header, base)
        channels = self._lead_indices(header.sig_name, base)
        record = wfdb.rdrecord(base, channels=channels)
        signal = np.asarray(record.p_signal, dtype=np.float64)
        if np.isnan(signal).any():
            medians = np.nanmedian(signal, axis=0)
            signal = np.where(np.isnan(signal), np.nan_to_num(medians), signal)
        ratio = Fraction(self.fs).limit_denominator(10_000) / Fraction(record.fs).limit_denominator(10_000)
        if ratio != 1:
            signal = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)
        ann_path = Path(f"{base}.{self.ann}") if self.ann else None
        if ann_path is None:
            return signal, None, None
        if not ann_path.exists():
            if self.ann != "atr":
                found = sorted(p.suffix for p in Path(base).parent.glob(Path(base).name + ".*"))
                raise ValueError(
                    f"annotation file {ann_path} not found (ann={self.ann!r}); files of record {base}: {found}"
                )
            warnings.warn(f"{ann_path} not found: detecting R peaks, labels unknown", stacklevel=2)
            return signal, None, None
        annotation = wfdb.rdann(base, self.ann)
        samples = np.round(np.asarray(annotation.sample) * float(ratio)).astype(np.int64)
        return signal, samples, np.asarray(annotation.symbol, dtype=str)

    def _lead_indices(self, sig_names: list[str], base: str) -> list[int]:
        if self.leads is None:
            return list(range(len(sig_names)))
        indices = []
        for lead in self.leads:
            if isinstance(lead, (int, np.integer)):
                if not 0 <= lead < len(sig_names):
                    raise ValueError(f"lead index {lead} out of range for record {base} with leads {sig_names}")
                indices.append(int(lead))
            elif lead in sig_names:
                indices.append(sig_names.index(lead))
            else:
                raise ValueError(f"lead {lead!r} not in record {base}; it has {sig_names}")
        return indices

    def _beat_labels(self, symbols: np.ndarray) -> np.ndarray:
        """Per-symbol label: 0 normal, 1 anomalous, -1 drop, -2 not a beat."""
        normal, anomaly = self.symbol_sets()
        other_label = {"drop": -1, "normal": 0, "anomaly": 1}[self.other]
        labels = np.full(len(symbols), -2, dtype=np.int8)
        is_beat = np.isin(symbols, list(BEAT_SYMBOLS))
        labels[is_beat] = other_label
        labels[np.isin(symbols, list(normal))] = 0
        labels[np.isin(symbols, list(anomaly))] = 1
        return labels

    def window_starts(self, n_samples: int, peaks: np.ndarray | None = None) -> np.ndarray:
        """Start samples of the windows that fit into a signal of `n_samples`.

        beats mode: one per R peak (`peaks`, required); sliding mode: every `stride_s`.
        """
        if self.mode == "sliding":
            stride = int(round(self.stride_s * self.fs))
            return np.arange(0, n_samples - self.window_len + 1, stride, dtype=np.int64)
        if peaks is None:
            raise ValueError("beats mode needs R-peak positions")
        starts = np.asarray(peaks, dtype=np.int64) - self.pre_samples
        return starts[self._fits(starts, n_samples)]

    def _fits(self, starts: np.ndarray, n_samples: int) -> np.ndarray:
        return (starts >= 0) & (starts + self.window_len <= n_samples)

    def cut(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw windows [N, C, L], start samples) from a signal [T, C] already at `fs`, without
        annotations: R peaks from the detector on the first lead in beats mode."""
        self._check_settings()
        signal = np.asarray(signal, dtype=np.float64)
        if signal.ndim == 1:
            signal = signal[:, None]
        peaks = detect_r_peaks(signal[:, 0], self.fs) if self.mode == "beats" else None
        starts = self.window_starts(len(signal), peaks)
        return _take(signal, starts, self.window_len), starts

    def _load_record(self, base: Path) -> Windows:
        signal, samples, symbols = self.read_record(base)
        info: dict[str, np.ndarray] = {}
        y: np.ndarray | None = None
        if samples is None:
            X, starts = self.cut(signal)
        else:
            labels = self._beat_labels(symbols)
            if self.mode == "beats":
                keep = (labels >= 0) & self._fits(samples - self.pre_samples, len(signal))
                starts = samples[keep] - self.pre_samples
                y, info["symbol"] = labels[keep], symbols[keep]
            else:
                starts = self.window_starts(len(signal))
                y, keep = self._sliding_labels(starts, samples, labels)
                starts, y = starts[keep], y[keep]
            X = _take(signal, starts, self.window_len)
        n = len(starts)
        return Windows(X=X, y=y, source=[base.name] * n, group=[base.name] * n, position=starts, info=info)

    def _sliding_labels(
        self, starts: np.ndarray, samples: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Window label from the beats whose R peak lies in the window's central half."""
        lo, hi = starts + self.window_len // 4, starts + (3 * self.window_len) // 4

        def count(mask: np.ndarray) -> np.ndarray:
            s = np.sort(samples[mask])
            return np.searchsorted(s, hi) - np.searchsorted(s, lo)

        anomalous = count(labels == 1) > 0
        dropped = count(labels == -1) > 0
        return anomalous.astype(np.int8), anomalous | ~dropped

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Subtract each window's per-lead median (baseline wander); no global scaling.

        [N, C, L] (or one [C, L] window) -> float32 [N, C, L].
        """
        x = self.check_raw(raw).astype(np.float32)
        return x - np.median(x, axis=-1, keepdims=True)

    def fit_quality(self, raw: np.ndarray) -> None:
        """Learn each lead's plausible peak-to-peak amplitude from normal training windows."""
        ptp = np.ptp(self.check_raw(raw).astype(np.float64), axis=-1)
        self.amplitude_range_ = np.quantile(ptp, [0.005, 0.995], axis=0).T.tolist()

    def quality_issues(self, raw: np.ndarray) -> list[str | None]:
        x = self.check_raw(raw).astype(np.float64)
        checks = {"flatline": self._flat, "clipping": self._clipped, "amplitude": self._implausible}
        failed = {name: checks[name](x) for name in self._enabled_checks(QUALITY_CHECKS)}
        return first_failures({name: mask for name, mask in failed.items() if mask is not None}, len(x))

    def _flat(self, x: np.ndarray) -> np.ndarray:
        span = int(round(self.flat_min_s * self.fs))
        if span > x.shape[-1]:
            return np.zeros(len(x), dtype=bool)
        return (sliding_range(x, span) <= self.flat_tolerance_mv).any(axis=-1).any(axis=-1)

    def _clipped(self, x: np.ndarray) -> np.ndarray:
        span = int(round(self.clip_min_s * self.fs))
        at_max = x >= x.max(axis=-1, keepdims=True) - self.clip_tolerance_mv
        at_min = x <= x.min(axis=-1, keepdims=True) + self.clip_tolerance_mv
        return (has_run(at_max, span) | has_run(at_min, span)).any(axis=-1)

    def _implausible(self, x: np.ndarray) -> np.ndarray | None:
        learned = getattr(self, "amplitude_range_", None)
        if learned is None or len(learned) != x.shape[1]:
            return None
        low, high = np.asarray(learned, dtype=np.float64).T
        ptp = np.ptp(x, axis=-1)
        return ((ptp < low / self.amplitude_margin) | (ptp > high * self.amplitude_margin)).any(axis=-1)


def _take(signal: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Windows [N, C, L] of a signal [T, C] at the given start samples."""
    if len(starts) == 0:
        return np.zeros((0, signal.shape[1], length), dtype=np.float32)
    return signal[starts[:, None] + np.arange(length)].transpose(0, 2, 1).astype(np.float32)


def check_record_files(header: wfdb.Record, base: str) -> None:
    """A header with a line per declared signal, and data files as long as it says: wfdb itself fails on
    either with a TypeError or a numpy broadcasting error that names neither the file nor the cause.
    A multi-segment header (wfdb.MultiRecord) names segment records, not data files: it is left to wfdb."""
    import wfdb

    if not isinstance(header, wfdb.Record):
        return
    described = len(header.sig_name or [])
    if header.n_sig < 1 or described != header.n_sig:
        raise ValueError(f"{base}.hea declares {header.n_sig} signal(s) but has {described} signal line(s): "
                         "each signal needs one")
    if not header.sig_len:
        return  # no length in the header: wfdb reads what the files hold
    files: dict[str, float] = {}
    for name, fmt, frame in zip(header.file_name, header.fmt, header.samps_per_frame or [1] * header.n_sig):
        files[name] = files.get(name, 0.0) + BYTES_PER_SAMPLE.get(fmt, 0.0) * (frame or 1)
    offsets = dict(zip(header.file_name, header.byte_offset or [None] * header.n_sig))
    for name, bytes_per_frame in files.items():
        needed = int(offsets[name] or 0) + int(np.ceil(bytes_per_frame * header.sig_len))
        path = Path(base).parent / name
        if not path.is_file():
            raise FileNotFoundError(f"record {base}: its data file {path} is missing")
        if path.stat().st_size < needed:
            raise ValueError(f"record {base} is truncated: {path} holds {path.stat().st_size} bytes, but its header "
                             f"declares {header.sig_len} samples per signal ({needed} bytes)")


def find_records(path: str | Path, records: Sequence[str] | None = None) -> list[Path]:
    """Record base paths (no extension) for a record path, or every/chosen record in a directory."""
    path = Path(path)
    if path.is_dir():
        if records is not None:
            bases = [path / r for r in records]
        else:
            bases = sorted(p.with_suffix("") for p in path.glob("*.hea"))
            if not bases:
                raise ValueError(f"no WFDB records (.hea files) in directory {path}")
    else:
        if records is not None:
            raise ValueError(f"records={list(records)} needs a directory, got {path}")
        bases = [path.with_suffix("") if path.suffix in _RECORD_SUFFIXES else path]
    for base in bases:
        if not Path(f"{base}.hea").is_file():
            raise FileNotFoundError(f"WFDB record not found: {base} (no {base}.hea)")
    return bases


def detect_r_peaks(signal: np.ndarray, fs: float, refractory_s: float = 0.2) -> np.ndarray:
    """R-peak sample indices of a single-lead ECG (Pan-Tompkins-like).

    Band-pass 5-15 Hz (zero phase, so no delay to undo), derivative, squaring, 150 ms
    moving integration; peaks of that envelope at least `refractory_s` apart are beats if
    they exceed an adaptive threshold between running signal and noise peak levels, with a
    search-back at half threshold when no beat came for 1.66 mean RR intervals. Each beat
    is then placed on the largest deflection (0.5-40 Hz) within 100 ms.

    On the MLII lead of MIT-BIH (30-min records) sensitivity and PPV at +-50 ms are >= 0.99
    for most records; paced rhythms (102, 104), very noisy 105/108 and the V5 lead of 114
    are weaker (PPV 0.84-0.96), as for the original Pan-Tompkins.
    """
    from scipy.signal import butter, find_peaks, sosfiltfilt

    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"detect_r_peaks needs a 1-D signal, got shape {x.shape}")
    if fs < 100:
        raise ValueError(f"detect_r_peaks needs fs >= 100 Hz, got {fs}")
    if len(x) < int(2 * fs):
        raise ValueError(f"signal of {len(x)} samples is shorter than 2 s at fs={fs}")
    sos = butter(2, [5.0, 15.0], btype="bandpass", fs=fs, output="sos")
    band = sosfiltfilt(sos, x)
    slope = np.gradient(band) * fs
    width = max(1, int(round(0.15 * fs)))
    envelope = np.convolve(slope * slope, np.ones(width) / width, mode="same")
    candidates, _ = find_peaks(envelope, distance=max(1, int(round(refractory_s * fs))))
    heights = envelope[candidates]
    reach = int(round(0.075 * fs))
    max_slope = np.array([np.abs(slope[max(0, p - reach) : p + reach + 1]).max() for p in candidates])
    t_wave = 0.36 * fs

    start = envelope[: int(2 * fs)]
    signal_level, noise_level = start.max() / 3.0, start.mean() / 2.0
    threshold = noise_level + 0.25 * (signal_level - noise_level)
    beats: list[int] = []  # indices into candidates
    rr: list[int] = []
    for i, (p, h) in enumerate(zip(candidates, heights, strict=True)):
        if beats and rr:
            mean_rr = float(np.mean(rr[-8:]))
            last = candidates[beats[-1]]
            if p - last > 1.66 * mean_rr:
                between = np.arange(beats[-1] + 1, i)
                between = between[heights[between] > 0.5 * threshold]
                if len(between):
                    j = int(between[np.argmax(heights[between])])
                    rr.append(int(candidates[j] - last))
                    beats.append(j)
                    signal_level = 0.25 * heights[j] + 0.75 * signal_level
                elif p - last > 3.0 * mean_rr:
                    signal_level *= 0.5  # a large artefact set the level too high: let it decay
        is_t_wave = bool(beats) and p - candidates[beats[-1]] < t_wave and max_slope[i] < 0.5 * max_slope[beats[-1]]
        if h > threshold and not is_t_wave:
            if beats:
                rr.append(int(p - candidates[beats[-1]]))
            beats.append(i)
            signal_level = 0.125 * h + 0.875 * signal_level
        else:
            noise_level = 0.125 * h + 0.875 * noise_level
        threshold = noise_level + 0.25 * (signal_level - noise_level)

    peaks = candidates[np.asarray(beats, dtype=np.int64)]
    wide = sosfiltfilt(butter(2, [0.5, 40.0], btype="bandpass", fs=fs, output="sos"), x)
    half = int(round(0.1 * fs))
    refined = [max(0, p - half) + int(np.argmax(np.abs(wide[max(0, p - half) : p + half + 1]))) for p in peaks]
    return np.unique(np.asarray(refined, dtype=np.int64))


def match_beats(detected: np.ndarray, reference: np.ndarray, tolerance: int) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) with one-to-one matching within `tolerance` samples."""
    detected = np.sort(np.asarray(detected))
    reference = np.sort(np.asarray(reference))
    used = np.zeros(len(detected), dtype=bool)
    tp = 0
    for r in reference:
        lo, hi = np.searchsorted(detected, [r - tolerance, r + tolerance + 1])
        free = [k for k in range(lo, hi) if not used[k]]
        if free:
            used[min(free, key=lambda k: abs(detected[k] - r))] = True
            tp += 1
    return tp, int(len(detected) - tp), int(len(reference) - tp)
