"""The audio of another file for a time range, as packets for :func:`jaxstyle.io.video.write_video`:
copied as it is where the container takes its codec and the whole track goes in, otherwise decoded,
cut to the sample and encoded as AAC. Times are seconds from the source's first video frame."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from jaxstyle.io.video.container import error_detail, video_origin

# Audio codecs copied as they are (no re-encoding) into each container; anything else becomes AAC.
REMUX_AUDIO = {
    "mp4": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}),
    "mov": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"}),
    "matroska": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "vorbis", "flac", "pcm_s16le",
                           "pcm_s24le"}),
}
AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
AAC_FRAME = 1024  # samples per AAC frame


def packet_time(packet) -> float:
    """A packet's time in seconds (its pts, else its dts; 0 without either)."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0


def audio_packets(av, out, source, start_s: float, end_s: float | None, muxer: str) -> Iterator:
    """Add ``source``'s first audio stream to ``out`` (now, before the header is written) and return
    the packets for it, in time order (lazily, so that they can be interleaved with the video): the
    source times ``[start_s, end_s)`` at output time 0 on (``end_s=None``: to the end)."""
    template = source.streams.audio[0]
    name = source.name
    origin = video_origin(source)  # source time of its first video frame: output time 0
    codec = template.codec_context.name
    if start_s == 0 and end_s is None and codec in REMUX_AUDIO[muxer] & out.supported_codecs:
        stream = out.add_stream_from_template(template)
        return _copied_packets(av, source, template, stream, origin, name)
    rate = template.codec_context.sample_rate
    rate = rate if rate in AAC_RATES else 48000
    layout = "mono" if template.codec_context.channels == 1 else "stereo"  # more channels: downmixed
    stream = out.add_stream("aac", rate=rate, layout=layout)
    stream.bit_rate = 96_000 if layout == "mono" else 192_000
    end = math.inf if end_s is None else end_s
    return _encoded_packets(av, source, template, stream, origin + start_s, origin + end, name)


def _copied_packets(av, source, template, stream, origin: float, name: str) -> Iterator:
    shift = round(origin / template.time_base) if template.time_base and origin else 0
    try:
        for packet in source.demux(template):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if shift:
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = stream
            yield packet
    except av.error.FFmpegError as exc:
        raise ValueError(f"{name}: corrupt audio: demuxing failed ({error_detail(exc)})") from None


def _encoded_packets(av, source, template, stream, lo: float, hi: float, name: str) -> Iterator:
    """AAC packets of the source audio between source times ``lo`` and ``hi`` (s), resampled to the
    output's rate and layout, cut to the sample; silence in front if the audio starts after ``lo``."""
    rate = stream.codec_context.sample_rate
    layout = stream.codec_context.layout.name
    channels = stream.codec_context.channels
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    buffer = np.zeros((channels, 0), np.float32)
    position = None  # source time (s) of the next resampled sample
    written = 0

    def encode(block: np.ndarray) -> list:
        nonlocal written
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, written, Fraction(1, rate)
        written += block.shape[1]
        return stream.encode(frame)

    def cut(piece) -> np.ndarray:
        nonlocal position
        samples = piece.to_ndarray().reshape(channels, -1)  # fltp: [channels, n]
        if position is None:
            position = float(piece.pts * piece.time_base) if piece.pts is not None else lo
            if position > lo:  # the audio starts after the first frame: silence keeps it in sync
                silence = np.zeros((channels, round((position - lo) * rate)), np.float32)
                samples, position = np.concatenate([silence, samples], axis=1), lo
        n = samples.shape[1]
        first = min(n, max(0, math.ceil((lo - position) * rate - 1e-6)))
        last = n if math.isinf(hi) else min(n, max(0, math.ceil((hi - position) * rate - 1e-6)))
        position += n / rate
        return samples[:, first:last]

    try:
        for packet in source.demux(template):
            for decoded in template.decode(packet):
                buffer = np.concatenate([buffer, *(cut(piece) for piece in resampler.resample(decoded))], axis=1)
            while buffer.shape[1] >= AAC_FRAME:
                yield from encode(buffer[:, :AAC_FRAME])
                buffer = buffer[:, AAC_FRAME:]
            if position is not None and position >= hi:
                break
        else:
            buffer = np.concatenate([buffer, *(cut(piece) for piece in resampler.resample(None))], axis=1)
    except av.error.FFmpegError as exc:
        raise ValueError(f"{name}: corrupt audio: decoding failed ({error_detail(exc)})") from None
    for k in range(0, buffer.shape[1], AAC_FRAME):  # the last frame may be shorter
        yield from encode(buffer[:, k:k + AAC_FRAME])
    yield from stream.encode(None)
