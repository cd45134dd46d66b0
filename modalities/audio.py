"""Audio clips (WAV) -> fixed-length waveform patches -> log-mel spectrogram inputs.

Raw windows stay waveforms so a stream producer only has to cut audio; the log-mel
transform lives in `prepare`, the single path used offline and by the live scorer.
WAVs are read with soundfile (torchaudio 2.11's loader needs FFmpeg/torchcodec).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT

from .base import Modality, Windows, aggregate_scores, first_failures, has_run, progress

__all__ = ["AudioModality", "aggregate_scores", "compile_pattern", "find_audio_files", "read_wav"]

_AUDIO_SUFFIXES = {".wav", ".flac"}
#: signal-quality checks, in the order a patch's reason is chosen
QUALITY_CHECKS = ("silence", "clipping")


class AudioModality(Modality):
    """Log-mel patches of mono audio resampled to `sample_rate`.

    Spectrogram defaults: n_fft = 64 ms rounded to a power of two (1024 at 16 kHz, 512 at
    8 kHz), hop = n_fft / 2, 64 mel bands, power spectrogram in dB clipped 80 dB below
    each patch's peak. A patch is `patch_frames` = 32 frames (1.06 s), i.e. a waveform
    segment of n_fft + 31 * hop samples (16896 at 16 kHz); frames are not centred, so a
    patch's spectrogram depends only on its own samples, exactly as for a streamed
    segment. Patches start every `patch_hop` frames (default 16: half overlap); the last
    one is zero-padded at the end, so every sample is covered, and a clip shorter than
    one patch gives one zero-padded patch. layout="2d" -> inputs [N, 1, n_mels,
    patch_frames]; "1d" -> [N, n_mels, patch_frames] (mel bands as channels).

    Labels: with `pattern` (e.g. "{digit}_{speaker}_{index}.wav"), fields are parsed
    from each file name; `label_field` with `normal_values` (all other values anomalous)
    and/or `anomaly_values` (all other values normal; with both lists, files in neither
    are skipped) gives y, `group_field` the split key (default: the file). Without a
    pattern, DCASE names give y when every file name has exactly one of the words "normal"
    or "anomaly" (2020: normal_id_00_*.wav; 2021+: section_00_source_test_anomaly_*.wav).

    Signal quality (`quality_issues`, on raw waveform patches; each check can be left out of
    `quality_checks`): "silence" when no sample of the patch reaches `silence_dbfs` (-90 dBFS,
    below one 16-bit step: digital silence, a dead input); "clipping" when `clip_min_samples`
    (3) consecutive samples reach `clip_level` (0.999) of full scale.
    """

    name = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int | None = None,
        hop_length: int | None = None,
        n_mels: int = 64,
        patch_frames: int = 32,
        patch_hop: int = 16,
        layout: str = "2d",
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        pattern: str | None = None,
        label_field: str | None = None,
        normal_values: Sequence[str] | None = None,
        anomaly_values: Sequence[str] | None = None,
        group_field: str | None = None,
        device: str = "cpu",
        batch_size: int = 256,
        verbose: bool = False,
        quality_checks: Sequence[str] = QUALITY_CHECKS,
        silence_dbfs: float = -90.0,
        clip_level: float = 0.999,
        clip_min_samples: int = 3,
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.patch_frames = patch_frames
        self.patch_hop = patch_hop
        self.layout = layout
        self.f_min = f_min
        self.f_max = f_max
        self.top_db = top_db
        self.pattern = pattern
        self.label_field = label_field
        self.normal_values = normal_values
        self.anomaly_values = anomaly_values
        self.group_field = group_field
        self.device = device
        self.batch_size = batch_size
        self.verbose = verbose
        self.quality_checks = tuple(quality_checks)
        self.silence_dbfs = silence_dbfs
        self.clip_level = clip_level
        self.clip_min_samples = clip_min_samples

    @property
    def fft_size(self) -> int:
        return self.n_fft or 2 ** round(math.log2(0.064 * self.sample_rate))

    @property
    def hop(self) -> int:
        return self.hop_length or self.fft_size // 2

    @property
    def segment_len(self) -> int:
        """Waveform samples in one patch: exactly `patch_frames` uncentred STFT frames."""
        return self.fft_size + (self.patch_frames - 1) * self.hop

    @property
    def raw_shape(self) -> tuple[int | None, ...]:
        return (self.segment_len,)

    def _check_settings(self) -> None:
        if self.layout not in ("1d", "2d"):
            raise ValueError(f"layout must be '1d' or '2d', got {self.layout!r}")
        if min(self.patch_frames, self.patch_hop, self.n_mels, self.sample_rate) < 1:
            raise ValueError("sample_rate, n_mels, patch_frames and patch_hop must be positive")
        if self.label_field is not None and self.normal_values is None and self.anomaly_values is None:
            raise ValueError(f"label_field={self.label_field!r} needs normal_values and/or anomaly_values")
        if self.pattern is not None:
            fields = compile_pattern(self.pattern).groupindex
            for option in ("label_field", "group_field"):
                value = getattr(self, option)
                if value is not None and value not in fields:
                    raise ValueError(f"{option}={value!r} is not a field of pattern {self.pattern!r}")
        elif self.label_field is not None or self.group_field is not None:
            raise ValueError("label_field and group_field need a file name `pattern`")

    def load(self, path: str | Path, split: str | None = None) -> Windows:
        """Patches from one audio file or every WAV in a directory.

        split: subdirectory to read in the DCASE layout ("train" or "test").
        """
        self._check_settings()
        files = find_audio_files(path, split)
        labels, groups, fields = self._file_labels(files)
        prefix = f"{split}/" if split else ""
        parts = []
        for i, f in enumerate(progress(files, self.verbose, "audio files")):
            if labels is not None and labels[i] < 0:
                continue
            patches, starts = self.cut(self.read(f))
            n = len(patches)
            parts.append(
                Windows(
                    X=patches,
                    y=None if labels is None else np.full(n, labels[i]),
                    source=[prefix + f.name] * n,
                    group=[groups[i] if groups else prefix + f.name] * n,
                    position=starts,
                    info={k: [v[i]] * n for k, v in fields.items()},
                )
            )
        if not parts:
            raise ValueError(f"no audio files left in {path} after applying the label values")
        return Windows.concat(parts)

    def read(self, path: str | Path) -> np.ndarray:
        """Mono float32 waveform of one file at `sample_rate`."""
        audio, rate = read_wav(path)
        if rate != self.sample_rate:
            audio = AF.resample(torch.from_numpy(audio), int(rate), int(self.sample_rate)).numpy()
        return audio

    def cut(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patches [N, segment_len], start samples) covering the whole clip, zero-padded at the end."""
        length, step = self.segment_len, self.patch_hop * self.hop
        n = 1 + max(0, math.ceil((len(audio) - length) / step))
        padded = np.zeros((n - 1) * step + length, dtype=np.float32)
        padded[: len(audio)] = audio
        starts = np.arange(n, dtype=np.int64) * step
        return padded[starts[:, None] + np.arange(length)], starts

    def _file_labels(
        self, files: list[Path]
    ) -> tuple[np.ndarray | None, list[str] | None, dict[str, list[str]]]:
        """Per-file (label 0/1/-1 skip or None, group or None, parsed name fields)."""
        if self.pattern is None:
            words = [set(re.split(r"[_\-.]", f.name.lower())) for f in files]
            if all(len(w & {"normal", "anomaly"}) == 1 for w in words):
                return np.array([int("anomaly" in w) for w in words]), None, {}
            return None, None, {}
        regex = compile_pattern(self.pattern)
        fields: dict[str, list[str]] = {k: [] for k in regex.groupindex}
        for f in files:
            match = regex.fullmatch(f.name)
            if match is None:
                raise ValueError(f"file name {f.name} in {f.parent} does not match pattern {self.pattern!r}")
            for k in fields:
                fields[k].append(match[k])
        groups = fields[self.group_field] if self.group_field else None
        if self.label_field is None:
            return None, groups, fields
        values = np.array(fields[self.label_field])
        normal = np.isin(values, [str(v) for v in self.normal_values or []])
        anomalous = np.isin(values, [str(v) for v in self.anomaly_values or []])
        if self.normal_values is None:
            normal = ~anomalous
        elif self.anomaly_values is None:
            anomalous = ~normal
        labels = np.where(normal, 0, np.where(anomalous, 1, -1))
        return labels, groups, fields

    def _transform(self) -> torch.nn.Module:
        """Log-mel module, built once per modality and device."""
        cached = getattr(self, "_mel", None)
        if cached is None or cached[0] != self.device:
            mel = AT.MelSpectrogram(
                sample_rate=self.sample_rate,
                n_fft=self.fft_size,
                hop_length=self.hop,
                n_mels=self.n_mels,
                f_min=self.f_min,
                f_max=self.f_max,
                center=False,
                power=2.0,
            )
            module = torch.nn.Sequential(mel, AT.AmplitudeToDB(stype="power", top_db=self.top_db)).to(self.device)
            self._mel = (self.device, module)
        return self._mel[1]

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """Waveform patches [N, segment_len] (or one) -> float32 log-mel [N, 1, n_mels, T] or [N, n_mels, T]."""
        self._check_settings()
        x = self.check_raw(raw).astype(np.float32)
        transform = self._transform()
        out = []
        with torch.no_grad():
            for start in range(0, len(x), self.batch_size):
                wave = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
                # [B, 1, samples] -> [B, 1, n_mels, T]: the dB floor (top_db) is then taken per
                # patch; a 3-D batch would share one floor across the batch.
                out.append(transform(wave[:, None]).cpu().numpy())
        spec = np.concatenate(out) if out else np.zeros((0, 1, self.n_mels, self.patch_frames), np.float32)
        return spec[:, 0] if self.layout == "1d" else spec

    def quality_issues(self, raw: np.ndarray) -> list[str | None]:
        magnitude = np.abs(self.check_raw(raw).astype(np.float32))
        checks = {
            "silence": lambda: magnitude.max(axis=-1) < 10 ** (self.silence_dbfs / 20),
            "clipping": lambda: has_run(magnitude >= self.clip_level, self.clip_min_samples),
        }
        return first_failures({name: checks[name]() for name in self._enabled_checks(QUALITY_CHECKS)}, len(magnitude))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("_mel", None)
        return state


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(mono float32 waveform, sample rate); unreadable or empty files raise ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(path) as f:
            declared = _declared_wav_frames(path, f)
            audio = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except (sf.SoundFileError, RuntimeError) as e:
        raise ValueError(f"cannot read audio file {path}: {e}") from None
    if len(audio) == 0:
        raise ValueError(f"audio file {path} holds no samples")
    if declared is not None and declared > len(audio):
        raise ValueError(f"audio file {path} is truncated: header declares {declared} frames, found {len(audio)}")
    return audio.mean(axis=1), int(rate)


def _declared_wav_frames(path: Path, f: sf.SoundFile) -> int | None:
    """Frames the WAV 'data' chunk header declares (libsndfile silently reads what is left)."""
    if f.format != "WAV":
        return None
    with open(path, "rb") as raw:
        head = raw.read(1 << 16)
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            if size in (0, 0xFFFFFFFF):  # length left open by a streaming writer
                return None
            width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "PCM_U8": 1}.get(f.subtype)
            return size // (width * f.channels) if width else None
        pos += 8 + size + (size & 1)
    return None


def find_audio_files(path: str | Path, split: str | None = None) -> list[Path]:
    """One audio file, or the sorted audio files directly in a directory (or its `split` subdirectory)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio path not found: {path}")
    if path.is_file():
        if split is not None:
            raise ValueError(f"split={split!r} needs a directory, got file {path}")
        return [path]
    directory = path / split if split else path
    if not directory.is_dir():
        raise FileNotFoundError(f"no {split!r} subdirectory in {path}")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _AUDIO_SUFFIXES)
    if not files:
        subdirs = sorted(d.name for d in directory.iterdir() if d.is_dir())
        hint = f"; subdirectories {subdirs}: pass split=" if subdirs else ""
        raise ValueError(f"no audio files (.wav, .flac) in directory {directory}{hint}")
    return files


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Regex for a file name pattern with {field} placeholders, e.g. "{digit}_{speaker}_{index}.wav"."""
    parts = re.split(r"\{(\w+)\}", pattern)
    if len(parts) < 3:
        raise ValueError(f"pattern {pattern!r} has no {{field}} placeholders")
    regex = "".join(f"(?P<{p}>.+?)" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    try:
        return re.compile(regex)
    except re.error as e:
        raise ValueError(f"bad file name pattern {pattern!r}: {e}") from None
