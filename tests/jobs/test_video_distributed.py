"""A ``--distributed`` video run of three processes, played by three threads sharing a work folder:
no process reads the work folder after the leader may have removed it (random weights, 64x48
frames, a few steps)."""

from __future__ import annotations

import threading
import time

import numpy as np
from PIL import Image

from jaxstyle.config import StyleConfig, VideoConfig
from jaxstyle.io import video as video_io
from jaxstyle.jobs.video import VideoJob, run_video, work_folder
from tests.clips import make_clip
from tests.helpers import smooth_image

PROCESSES = 3


def test_three_processes_finish_before_the_leader_removes_the_work_folder(tmp_path, random_vgg):
    style = tmp_path / "painting.png"
    Image.fromarray((smooth_image(40, 40, 2) * 255).astype(np.uint8)).save(style)
    source = make_clip(tmp_path / "clip.mp4", n=7, audio=None)
    out = tmp_path / "out.mp4"
    passes = 2
    job = VideoJob(input=str(source), styles=(str(style),), output=str(out), size=64,
                   config=StyleConfig(iterations=2, style_weight=1e-1),
                   video=VideoConfig(first_iterations=2, passes=passes, mode="parallel"))
    lock = threading.Lock()
    barriers: dict[str, threading.Barrier] = {}
    leader_waits: list[str] = []

    def barrier(index: int, name: str) -> None:
        with lock:
            gate = barriers.setdefault(name, threading.Barrier(PROCESSES, timeout=300))
            if index == 0:
                leader_waits.append(name)
        gate.wait()
        if index != 0 and name == f"pass-{passes - 1}":
            # The others are slow to go on: they wait until the leader has removed the work folder,
            # or is itself waiting for them.
            deadline = time.monotonic() + 120
            while (work_folder(out).exists() and leader_waits[-1] == name and time.monotonic() < deadline):
                time.sleep(0.01)

    errors, outcomes = {}, {}

    def process(index: int) -> None:
        try:
            outcomes[index] = run_video(job, vgg=random_vgg, assign=lambda i: i % PROCESSES == index,
                                        barrier=lambda name: barrier(index, name), leader=index == 0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[index] = exc
            for gate in list(barriers.values()):
                gate.abort()

    threads = [threading.Thread(target=process, args=(i,)) for i in range(PROCESSES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    assert video_io.probe(out).frames == 7 and not work_folder(out).exists()
    assert all(outcomes[i].cuts == outcomes[0].cuts for i in range(PROCESSES))
    computed = {i: sorted({r.index for r in outcomes[i].records if r.start != "resumed"}) for i in range(PROCESSES)}
    assert computed == {i: [k for k in range(7) if k % PROCESSES == i] for i in range(PROCESSES)}
