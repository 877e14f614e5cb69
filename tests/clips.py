"""Tiny clips made with PyAV for the tests: a moving square over grey quadrants, a sine tone; frames
at any times (variable rate, dropped frames); field-coded H.264 written by hand (I_PCM macroblocks); a
file cut inside a frame; how many frames each walk over a video decodes."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

av = __import__("pytest").importorskip("av")

FPS = Fraction(24)
RATE = 48000
# 30 fps, frozen for 1 s after frame 14: 30 frames over 2 s ("30 frames, but its header implies 60").
FREEZE = list(range(15)) + list(range(45, 60))


def pattern(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """uint8 [h, w, 3]: four grey quadrants (asymmetric under every rotation and flip) and a white
    square moving right by 3 px a frame."""
    image = np.empty((h, w, 3), np.uint8)
    image[: h // 2, : w // 2], image[: h // 2, w // 2:] = 40, 100
    image[h // 2:, : w // 2], image[h // 2:, w // 2:] = 160, 220
    image[4:12, 2 + 3 * i: 10 + 3 * i] = 255
    return image


def tone(t: np.ndarray) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def make_clip(path, n=12, h=48, w=64, *, codec="libx264", pix_fmt="yuv420p", fps=FPS, audio=tone, rotation=None,
              hflip=False, frame=None, container_options=None, ticks=None, encoder_options=None):
    """Write a clip of ``n`` frames of ``frame(i)`` (default :func:`pattern`, rgb24) and, if ``audio``, an
    AAC track of ``audio(t)`` as long as the video. ``ticks``: frame i shows at ``ticks[i] / fps`` s
    (increasing; gaps for a variable rate or dropped frames), else at ``i / fps``. ``encoder_options``:
    added to the encoder's (x264: ``crf`` 1)."""
    ticks = list(range(n)) if ticks is None else list(ticks)
    frame = frame or (lambda i: av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24"))
    with av.open(str(path), "w", options=container_options or {}) as c:
        options = {"crf": "1"} if codec == "libx264" else {}
        s = c.add_stream(codec, rate=fps, options={**options, **(encoder_options or {})})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation, hflip=hflip)
        a = c.add_stream("aac", rate=RATE, layout="mono") if audio else None
        for i in range(n):
            f = frame(i)
            f.pts = ticks[i]
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        if a is not None:
            x = audio(np.arange(round((ticks[n - 1] + 1) / fps * RATE)) / RATE)
            for k in range(0, len(x), 1024):
                af = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = RATE, k
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return path


def decoded_audio(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])


def cut_inside(whole, folder, frame: int):
    """``whole`` cut inside the packet of video frame ``frame`` (its index, if in front, kept), as
    ``folder / half.SUFFIX``."""
    with av.open(str(whole)) as c:
        cut = [p.pos for p in c.demux(video=0) if p.size][frame] + 5
    half = folder / f"half{whole.suffix}"
    half.write_bytes(whole.read_bytes()[:cut])
    return half


def watch_walks(monkeypatch, limit: int | None = None) -> list[int]:
    """How many frames each walk over a video's decoded frames yields (``FrameWalk``: probe, probe_header,
    read_frames), one entry a walk, as they go; with ``limit``, an AssertionError at a walk's frame
    ``limit + 1`` (nothing read that a check should have come before)."""
    from jaxstyle.io.video.decode import FrameWalk

    walks: list[int] = []
    iterate = FrameWalk.__iter__

    def counted(walk):
        walks.append(0)
        k = len(walks) - 1
        for frame in iterate(walk):
            if limit is not None and walks[k] >= limit:
                raise AssertionError(f"a walk decoded more than {limit} frame(s) of {walk.path}")
            walks[k] += 1
            yield frame

    monkeypatch.setattr(FrameWalk, "__iter__", counted)
    return walks


def one_line_naming(exc_info, path) -> None:
    """The error is one line that starts with ``path``."""
    message = str(exc_info.value)
    assert message.startswith(str(path)) and "\n" not in message, message


# ----------------------------------------------------------------------------- field-coded H.264

class _Bits:
    """An H.264 RBSP written bit by bit: u(n), ue(v), se(v) (ITU-T H.264 7.2)."""

    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> _Bits:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> _Bits:
        return self.u((value + 1).bit_length() - 1, 0).u((value + 1).bit_length(), value + 1)

    def se(self, value: int) -> _Bits:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> _Bits:
        self.bits += [0] * (-len(self.bits) % 8)
        return self

    def rbsp(self) -> bytes:
        self.bits.append(1)  # rbsp_stop_one_bit
        return np.packbits(np.array(self.align().bits, np.uint8)).tobytes()


def _nal(ref_idc: int, kind: int, rbsp: bytes) -> bytes:
    """An Annex B NAL unit: start code, header, the RBSP with emulation prevention bytes."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return b"\0\0\0\1" + bytes([ref_idc << 5 | kind]) + bytes(out)


def _field_slice(y: np.ndarray, u: np.ndarray, v: np.ndarray, bottom: int, idr_id: int) -> bytes:
    """One field (its rows of Y, U, V) as an I slice of I_PCM macroblocks: the top field an IDR
    picture, the bottom one the second field of the same frame (frame_num 0)."""
    idr = not bottom
    b = _Bits().ue(0).ue(7).ue(0).u(4, 0).u(1, 1).u(1, bottom)  # first mb, I slice, pps, frame_num, field
    if idr:
        b.ue(idr_id)
    b.u(6, bottom)  # pic_order_cnt_lsb
    b.u(2, 0) if idr else b.u(1, 0)  # dec_ref_pic_marking: no flags / sliding window
    b.se(0).ue(1)  # slice_qp_delta, deblocking off
    for my in range(y.shape[0] // 16):
        for mx in range(y.shape[1] // 16):
            b.ue(25).align()  # I_PCM
            for plane, k in ((y, 16), (u, 8), (v, 8)):
                for value in plane[my * k:(my + 1) * k, mx * k:(mx + 1) * k].ravel():
                    b.u(8, int(value))
    return _nal(3, 5 if idr else 1, b.rbsp())


def field_coded_h264(n: int, h: int = 64, w: int = 64) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(SPS + PPS, [(top field, bottom field) per frame]) of :func:`pattern` as PAFF H.264: each field
    its own picture (field_pic_flag 1, Main profile, CAVLC), as interlaced cameras record; h a
    multiple of 32, w of 16. x264 codes interlaced video as MBAFF frames only, hence this."""
    sps = _Bits().u(8, 77).u(8, 0).u(8, 30).ue(0).ue(0).ue(0).ue(2).ue(1).u(1, 0)
    sps.ue(w // 16 - 1).ue(h // 32 - 1).u(5, 0b00100)  # frame_mbs_only 0, no MBAFF, direct 8x8, no crop/VUI
    pps = _Bits().ue(0).ue(0).u(2, 0).ue(0).ue(0).ue(0).u(3, 0).se(0).se(0).se(0).u(3, 0b100)
    fields = []
    for i in range(n):
        planes = av.VideoFrame.from_ndarray(pattern(i, h, w), format="rgb24").reformat(format="yuv420p").to_ndarray()
        y, u, v = planes[:h], planes[h:h * 5 // 4].reshape(h // 2, -1), planes[h * 5 // 4:].reshape(h // 2, -1)
        fields.append(tuple(_field_slice(y[p::2], u[p::2], v[p::2], p, i % 2) for p in (0, 1)))
    return _nal(3, 7, sps.rbsp()) + _nal(3, 8, pps.rbsp()), fields


def make_field_coded_clip(path, n=6, h=64, w=64, *, fps=25, per_field=True):
    """A clip of :func:`field_coded_h264` (no audio), each field its own packet (``per_field``) at
    1 / (2 fps) s, or both in one packet per frame (as MP4 muxers usually store them)."""
    header, fields = field_coded_h264(n, h, w)
    raw = io.BytesIO(header + b"".join(top + bottom for top, bottom in fields))
    base = Fraction(1, 2 * fps)
    with av.open(raw, format="h264") as src, av.open(str(path), "w") as c:
        s = c.add_stream_from_template(src.streams.video[0])  # parameters from the SPS, not an encoder's
        s.time_base, s.codec_context.framerate = base, Fraction(fps)
        packets = [bytes(p) for p in src.demux(video=0) if p.size]
        assert len(packets) == 2 * n, len(packets)  # the demuxer's parser keeps one field a packet
        units = [packets[k:k + 2] if per_field else [b"".join(packets[k:k + 2])] for k in range(0, 2 * n, 2)]
        for i, unit in enumerate(units):
            for k, data in enumerate(unit):
                p = av.Packet(data)
                p.stream, p.time_base = s, base
                p.pts = p.dts = 2 * i + k
                p.duration = 2 // len(unit)
                p.is_keyframe = k == 0
                c.mux(p)
    return path
