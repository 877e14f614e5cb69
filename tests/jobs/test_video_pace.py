"""How a video run says its pace: frames per second, or seconds per frame when slow."""

from jaxstyle.jobs.video_report import Speed


def test_a_slow_run_says_seconds_per_frame_not_zero_frames_per_second():
    assert "327.4 s/frame" in Speed(computed=1, resumed=0, passes=1, seconds=327.4).said()
    assert "2.50 frames/s" in Speed(computed=3, resumed=2, passes=1, seconds=1.2).said()
    assert "0.00 frames/s" in Speed(computed=0, resumed=4, passes=1, seconds=2.0).said()  # all resumed
