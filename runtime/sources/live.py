"""Live sources (cameras, streams): a capture thread keeps the newest frame; reconnect with back-off."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from edgedepth.errors import SourceError
from edgedepth.runtime.sources.base import Frame, ReconnectPolicy, Source, normalize_image

LOG = logging.getLogger(__name__)


class LiveSource(Source):
    """A camera or stream read by a background thread that keeps only the newest frame.

    ``opener`` returns an opened ``cv2.VideoCapture``-like object (``read()``, ``release()``) or
    raises SourceError; it is called again to reconnect after the stream drops.
    """

    live = True

    def __init__(
        self,
        opener: Callable[[], Any],
        description: str,
        reconnect: Optional[ReconnectPolicy] = None,
        frame_timeout_s: float = 10.0,
        nominal_fps: Optional[float] = None,
    ) -> None:
        super().__init__(description)
        self._opener = opener
        self._policy = reconnect or ReconnectPolicy()
        self._frame_timeout_s = frame_timeout_s
        self._nominal_fps = nominal_fps
        self._capture = opener()  # first open in the caller's thread: errors surface at once
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._latest: Optional[Frame] = None
        self._error: Optional[SourceError] = None
        self._finished = False
        self._reconnecting = False
        self._index = 0
        self._thread = threading.Thread(target=self._capture_loop, name=f"capture {description}", daemon=True)
        self._thread.start()

    @property
    def fps(self) -> Optional[float]:
        return self._nominal_fps

    # --- capture thread ---

    def _capture_loop(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                ok, image = self._capture.read()
                if self._stop.is_set():
                    break
                if not ok:
                    failures += 1
                    if failures >= self._policy.failures_before_reconnect:
                        if not self._reconnect():
                            break
                        failures = 0
                    continue
                failures = 0
                self._publish(image, start)
        except Exception as exc:  # a capture backend crash must reach the consumer, not vanish
            self._fail(SourceError(f"{self.description} failed while reading: {type(exc).__name__}: {exc}"))
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _publish(self, image: Any, start: float) -> None:
        now = time.perf_counter()
        image = normalize_image(image)
        with self._cond:
            self.counters.read += 1
            if image is None:
                self.counters.corrupt += 1
                return
            if self._latest is not None:
                self.counters.dropped += 1  # the consumer never took the previous one
            self._latest = Frame(self._index, image, now, now - start)
            self._index += 1
            self._cond.notify_all()

    def _reconnect(self) -> bool:
        """Reopen with back-off; False (and a stored error) when every attempt failed."""
        self._set_reconnecting(True)
        self._release_capture()
        last_error = "the stream ended"
        for attempt, delay in enumerate(self._policy.delays(), start=1):
            LOG.warning("%s dropped; reconnect attempt %d/%d in %.1f s",
                        self.description, attempt, self._policy.attempts, delay)
            if self._stop.wait(delay):
                return False
            try:
                self._capture = self._opener()
            except SourceError as exc:
                last_error = str(exc)
                continue
            self.counters.reconnects += 1
            self._set_reconnecting(False)
            return True
        self._fail(SourceError(self._lost_message(last_error)))
        return False

    def _lost_message(self, last_error: str) -> str:
        if not self._policy.attempts:
            return f"{self.description} stopped delivering frames and reconnecting is off (--reconnect-attempts 0)"
        return (
            f"{self.description} stopped delivering frames and {self._policy.attempts} reconnect attempts over "
            f"{sum(self._policy.delays()):.0f} s failed (last: {last_error}); "
            "check the cable, power or network and run again"
        )

    def _set_reconnecting(self, value: bool) -> None:
        with self._cond:
            self._reconnecting = value
            self._cond.notify_all()

    def _fail(self, error: SourceError) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _release_capture(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    # --- consumer side ---

    def read(self) -> Optional[Frame]:
        """The newest frame not yet returned; waits for one. None once closed.

        Raises SourceError when the stream is lost for good, or when no frame arrives for
        ``frame_timeout_s`` outside reconnection (a stalled device).
        """
        deadline = time.monotonic() + self._frame_timeout_s
        with self._cond:
            while True:
                if self._latest is not None:
                    frame, self._latest = self._latest, None
                    self.counters.delivered += 1
                    return frame
                if self._error is not None:
                    raise self._error
                if self._finished or self._stop.is_set():
                    return None
                if self._reconnecting:
                    deadline = time.monotonic() + self._frame_timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"no frame from {self.description} for {self._frame_timeout_s:.1f} s: the device stalled; "
                        "check it (another process may hold it) or raise --frame-timeout"
                    )
                self._cond.wait(min(remaining, 0.1))

    def close(self, join_timeout_s: float = 5.0) -> None:
        """Stop the thread, then release the capture (never while a read may still be running)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=join_timeout_s)
        if self._thread.is_alive():
            LOG.warning("%s: capture thread still blocked in read(); leaving the device to process exit",
                        self.description)
            return
        self._release_capture()
