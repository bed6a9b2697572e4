"""PullTracker as a plain object: progress kept for a reloaded page, one pull per model,
errors said, old pulls forgotten."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from llmport.api.ui.pulls import MAX_NUM_FINISHED, PullTracker
from llmport.errors import InvalidParameter, ModelNotFound
from llmport.store.pull import Progress, ProgressCallback


class FakeLibrary:
    """Pulls that report what they are told and wait for ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []

    def pull(self, ref: str, report: ProgressCallback | None = None) -> None:
        assert report is not None
        self.calls.append(ref)
        report(Progress("pulling manifest"))
        report(Progress("pulling abc", "sha256:abc", 100, 40))
        self.release.wait(5)
        if ref.endswith("missing"):
            raise ModelNotFound(f"{ref} not found")
        report(Progress("pulling abc", "sha256:abc", 100, 100))
        report(Progress("success"))


def wait_done(tracker: PullTracker, model: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = next(s for s in tracker.list() if s["model"] == model)
        if state["is_done"]:
            return state
        time.sleep(0.01)
    raise AssertionError(f"{model} never finished")


def test_progress_is_kept_and_a_running_pull_is_joined_not_repeated() -> None:
    library = FakeLibrary()
    tracker = PullTracker(library)  # type: ignore[arg-type]
    tracker.start("hf.co/a/b:Q8_0")
    deadline = time.monotonic() + 5
    while tracker.list()[0]["completed"] != 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    state = tracker.list()[0]
    assert (state["total"], state["completed"], state["is_done"]) == (100, 40, False)
    assert state["notes"] == ["pulling manifest"]
    assert tracker.start("hf.co/a/b:Q8_0")["completed"] == 40
    library.release.set()
    done = wait_done(tracker, "hf.co/a/b:Q8_0")
    assert done["completed"] == 100 and done["status"] == "success" and done["error"] is None
    assert library.calls == ["hf.co/a/b:Q8_0"]


def test_a_failed_pull_keeps_its_reason() -> None:
    library = FakeLibrary()
    library.release.set()
    tracker = PullTracker(library)  # type: ignore[arg-type]
    tracker.start("hf.co/a/missing")
    state = wait_done(tracker, "hf.co/a/missing")
    assert state["status"] == "error" and "not found" in state["error"]


@pytest.mark.parametrize("ref", ["gemma3:270m", "/etc/passwd", "hf.co/../x"])
def test_only_hub_references_are_pulled(ref: str) -> None:
    with pytest.raises(InvalidParameter):
        PullTracker(FakeLibrary()).start(ref)  # type: ignore[arg-type]


def test_old_finished_pulls_are_forgotten() -> None:
    library = FakeLibrary()
    library.release.set()
    clock = iter(range(1000))
    tracker = PullTracker(library, clock=lambda: float(next(clock)))  # type: ignore[arg-type]
    names = [f"hf.co/a/m{i}" for i in range(MAX_NUM_FINISHED + 3)]
    for name in names:
        tracker.start(name)
        wait_done(tracker, name)
    listed = [s["model"] for s in tracker.list()]
    assert len(listed) == MAX_NUM_FINISHED + 1  # The newest started before forgetting.
    assert listed[0] == names[-1] and names[0] not in listed
