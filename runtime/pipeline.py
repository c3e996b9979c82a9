"""The streaming loop: capture -> preprocess -> infer -> postprocess/render, overlapped.

Three threads joined by bounded queues, so while the network runs on frame k, frame k+1 is
read and preprocessed and frame k-1 is coloured, shown and written; throughput approaches the
backend's own. One preprocessed frame at most waits for the network, so a live camera's frames
are never older than one inference. The render stage runs on the calling (main) thread, where
GUI toolkits want it and where Ctrl-C lands. With ``streams`` > 1, that many inferer threads run
frames at once (a backend that takes concurrent calls: edgedepth.runtime.streams says why this
pays on the CPU), and the render stage puts their results back in order.

Depth stages (:class:`DepthStage`: the focal rescale of ``--intrinsics``, and post-processors such
as sparse-depth alignment or temporal filtering) run on the render thread, in stream order, on
each frame's depth before any sink sees it: the window, the video, the depth files, the point
clouds, the recording and ``on_depth`` all get the same, final depth.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edgedepth.cli import describe_os_error
from edgedepth.colormap import colorize_depth
from edgedepth.errors import EdgeDepthError, UsageError
from edgedepth.native import preprocessor
from edgedepth.runtime.backend import Backend, warm_up
from edgedepth.runtime.sinks import DepthWriter, VideoSink, WindowSink, draw_overlay, side_by_side
from edgedepth.runtime.sources import Frame, Source
from edgedepth.runtime.stats import STAGES, RateMeter, StageTimings

LOG = logging.getLogger(__name__)

_END = object()  # end of stream marker passed down the queues
_POLL_S = 0.05  # how often blocked stages look at the stop flag (and the window at its events)


class DepthStage(Protocol):
    """One step applied to every frame's depth on the render thread, in stream order (also with
    several inference streams), before every sink.

    ``name`` is the key of :meth:`summary` in the run's stats JSON. A stage may keep state from
    frame to frame (frames arrive in order); it must return a new array or its input, H x W float32
    metres, with invalid pixels <= 0 or NaN.
    """

    name: str

    def __call__(self, frame: Frame, depth: np.ndarray) -> np.ndarray: ...

    def summary(self) -> Dict[str, Any]:
        """What the stage did over the run (JSON-serialisable), for the stats."""
        ...


class FrameSink(Protocol):
    """An output fed each frame with its final depth (point clouds, a recording)."""

    def write(self, frame: Frame, depth: np.ndarray) -> Any: ...

    def close(self) -> None: ...


@dataclass
class Outputs:
    """The sinks of one run; any may be None."""

    window: Optional[WindowSink] = None
    video: Optional[VideoSink] = None
    depth: Optional[DepthWriter] = None
    #: Point clouds, a recording: each gets every frame and its depth, in order.
    frame_sinks: List[FrameSink] = field(default_factory=list)
    #: Library use: called with each frame and its depth (H x W float32 metres) on the render thread.
    on_depth: Optional[Callable[[Frame, np.ndarray], None]] = None

    @property
    def needs_view(self) -> bool:
        return self.window is not None or self.video is not None

    def close(self) -> None:
        """Finalise every sink (the video's container index is written here), even after an error."""
        errors = []
        for sink in (self.video, self.depth, *self.frame_sinks, self.window):
            if sink is None:
                continue
            try:
                sink.close()
            except Exception as exc:  # close the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]


@dataclass
class PipelineOptions:
    max_frames: Optional[int] = None
    colormap: str = "turbo"
    #: (min, max) metres for the colour map; None uses the model's spec.
    depth_range: Optional[Tuple[float, float]] = None
    overlay: bool = True
    warmup_iterations: int = 1
    #: Seconds between progress lines in the log (0 disables).
    progress_every_s: float = 5.0
    #: python, native (C++) or cuda: edgedepth.native.IMPLEMENTATIONS.
    preprocess: str = "python"
    #: Frames inferred at once, one inferer thread each (edgedepth.runtime.streams.plan_inference);
    #: more than 1 needs a backend whose ``concurrent_calls`` is True.
    streams: int = 1


@dataclass
class RunResult:
    """What a run did: frame counts, end-to-end fps, per-stage timings, and why it stopped."""

    exit_reason: str
    frames: Dict[str, int]
    fps: float
    wall_s: float
    stages_ms: Dict[str, Dict[str, float]]
    error: Optional[str] = None
    info: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            **self.info,
            "exit_reason": self.exit_reason,
            "error": self.error,
            "fps": round(self.fps, 3),
            "wall_s": round(self.wall_s, 3),
            "frames": dict(self.frames),
            "stages_ms": self.stages_ms,
        }


class PipelineError(EdgeDepthError):
    """A run that stopped on an error (a source or backend failure, an output that cannot be
    written). Outputs are finalised before it is raised; ``result`` holds the counts and timings so
    far, and ``__cause__`` the original error."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class _Item:
    frame: Frame
    tensor: Optional[np.ndarray]
    #: Position in the stream: the render stage shows items in this order.
    seq: int = 0
    depth: Optional[np.ndarray] = None


class _StageError:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class DepthPipeline:
    """Runs ``source`` through ``backend`` into ``outputs``; :meth:`run` returns a RunResult."""

    def __init__(self, source: Source, backend: Backend, outputs: Outputs,
                 options: Optional[PipelineOptions] = None, stages: Sequence[DepthStage] = ()) -> None:
        self.source = source
        self.stages = _check_stage_names(stages)
        self.backend = backend
        self.outputs = outputs
        self.options = options or PipelineOptions()
        spec = backend.spec
        self.depth_range = self.options.depth_range or (spec.min_depth, spec.max_depth)
        self._preprocess = preprocessor(self.options.preprocess)
        self._streams = _check_streams(self.options.streams, backend)
        self.timings = StageTimings(STAGES)
        self._stop = threading.Event()
        self._stop_requested = False  # a plain flag: set from a signal handler, read between frames
        self._slot = threading.Semaphore(1)  # one preprocessed frame may wait for the network
        self._to_infer: "queue.Queue[Any]" = queue.Queue()
        self._to_render: "queue.Queue[Any]" = queue.Queue(maxsize=2)
        self._waiting: Dict[int, _Item] = {}  # results that came back before an earlier frame's
        self._next_seq = 0
        self._rate = RateMeter()
        self._processed = 0
        self._first_start: Optional[float] = None
        self._last_done: Optional[float] = None
        self._last_size: Optional[Tuple[int, int]] = None
        self._last_progress = time.perf_counter()

    # --- threads ---

    def _reader(self) -> None:
        try:
            read = 0
            while not self._stop.is_set() and self._under_limit(read):
                if not self._slot.acquire(timeout=_POLL_S):
                    continue
                frame = self.source.read()
                if frame is None:
                    break
                start = time.perf_counter()
                tensor = self._preprocess(frame.image, self.backend.spec, "BGR")
                self.timings.add("preprocess", time.perf_counter() - start)
                self.timings.add("capture", frame.capture_s)
                self._to_infer.put(_Item(frame, tensor, read))
                read += 1
            for _ in range(self._streams):  # one end marker per inferer thread
                self._to_infer.put(_END)
        except BaseException as exc:  # hand every failure to the main thread
            self._to_infer.put(_StageError(exc))

    def _under_limit(self, read: int) -> bool:
        return self.options.max_frames is None or read < self.options.max_frames

    def _inferer(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item = self._to_infer.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                self._slot.release()
                if item is _END or isinstance(item, _StageError) or self._stop.is_set():
                    self._put_render(item)
                    return
                start = time.perf_counter()
                assert item.tensor is not None, "the reader queues every frame with its tensor"
                item.depth = self.backend.infer(item.tensor)
                self.timings.add("infer", time.perf_counter() - start)
                item.tensor = None  # free it now rather than when the render stage is done
                if not self._put_render(item):
                    return
        except BaseException as exc:
            self._put_render(_StageError(exc))

    def _put_render(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._to_render.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    # --- main thread ---

    def request_stop(self) -> None:
        """End the run after the frame being rendered, as ``interrupted`` (safe from a signal handler
        or another thread): every output then holds exactly the frames counted as processed."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def run(self) -> RunResult:
        """Stream until the source ends, ``max_frames``, q/Esc, Ctrl-C or an error; finalise outputs."""
        warm_up(self.backend, self.options.warmup_iterations)
        threads = [threading.Thread(target=self._reader, name="depth-run reader", daemon=True)]
        threads += [threading.Thread(target=self._inferer, name=f"depth-run infer {index}", daemon=True)
                    for index in range(self._streams)]
        for thread in threads:
            thread.start()
        reason, error = "end_of_stream", None
        try:
            reason = self._render_loop()
        except KeyboardInterrupt:
            reason = "interrupted"
        except Exception as exc:  # outputs are finalised and stats kept for any failure
            reason, error = "error", exc
        finally:
            closing_error = self._shutdown(threads)
        if closing_error is not None:  # an output that could not be finished (a full disk) fails the run
            if error is not None:
                LOG.error("%s", _describe(closing_error))
            else:
                reason, error = "error", closing_error
        result = self._result(reason, _describe(error) if error else None)
        if isinstance(error, (EdgeDepthError, OSError)):
            raise PipelineError(result.error or "", result) from error
        if error is not None:  # not an edgedepth or I/O error: a bug, whose traceback is wanted
            raise error
        return result

    def _render_loop(self) -> str:
        ended = 0
        while not self._stop_requested:
            try:
                item = self._to_render.get(timeout=_POLL_S)
            except queue.Empty:
                if self.outputs.window is not None and not self.outputs.window.poll():
                    return "user_quit"
                continue
            if item is _END:
                ended += 1  # every inferer has sent its last frame when the last marker arrives
                if ended == self._streams:
                    return "max_frames" if self._reached_limit() else "end_of_stream"
                continue
            if isinstance(item, _StageError):
                raise item.error
            if not self._finish_in_order(item):
                return "user_quit"
        return "interrupted"

    def _finish_in_order(self, item: _Item) -> bool:
        """Render ``item`` and the results waiting behind it, in stream order; False when the user quit."""
        self._waiting[item.seq] = item
        while self._next_seq in self._waiting and not self._stop_requested:
            if not self._finish(self._waiting.pop(self._next_seq)):
                return False
            self._next_seq += 1
        return True

    def _reached_limit(self) -> bool:
        return self.options.max_frames is not None and self._processed >= self.options.max_frames

    def _finish(self, item: _Item) -> bool:
        """Postprocess and render one frame; False when the user quit."""
        start = time.perf_counter()
        assert item.depth is not None, "the inferer sets depth before it queues an item for rendering"
        depth = np.array(item.depth[0, 0], dtype=np.float32)  # own copy: backends may reuse buffers
        for stage in self.stages:
            depth = stage(item.frame, depth)
        colour = colorize_depth(depth, *self.depth_range, self.options.colormap) if self.outputs.needs_view else None
        postprocessed = time.perf_counter()
        self.timings.add("postprocess", postprocessed - start)
        keep_going = self._render(item.frame, depth, colour)
        done = time.perf_counter()
        self.timings.add("render", done - postprocessed)
        self.timings.add("end_to_end", done - item.frame.captured_at)
        self._count(item.frame, done)
        return keep_going

    def _render(self, frame: Frame, depth: np.ndarray, colour: Optional[np.ndarray]) -> bool:
        self._note_size_change(frame.image.shape[:2])
        if self.outputs.depth is not None:
            self.outputs.depth.write(frame.name, depth)
        for sink in self.outputs.frame_sinks:
            sink.write(frame, depth)
        if self.outputs.on_depth is not None:
            self.outputs.on_depth(frame, depth)
        if colour is None:
            return True
        view = side_by_side(frame.image, colour)
        if self.options.overlay:
            draw_overlay(view, self._overlay_lines(frame))
        if self.outputs.video is not None:
            self.outputs.video.write(view)
        return self.outputs.window.show(view) if self.outputs.window is not None else True

    def _overlay_lines(self, frame: Frame) -> List[str]:
        rate = self._rate.tick(time.perf_counter())
        latency_ms = (time.perf_counter() - frame.captured_at) * 1000.0
        fps_text = f"{rate:5.1f} FPS" if rate else "  -- FPS"
        return [f"{fps_text}  latency {latency_ms:4.0f} ms", self.backend.detail]

    def _note_size_change(self, size: Tuple[int, int]) -> None:
        if self._last_size is not None and size != self._last_size:
            LOG.warning("frame size changed from %sx%s to %sx%s",
                        self._last_size[1], self._last_size[0], size[1], size[0])
        self._last_size = size

    def _count(self, frame: Frame, done: float) -> None:
        if self._first_start is None:
            self._first_start = frame.captured_at
        self._last_done = done
        self._processed += 1
        if self.options.progress_every_s and done - self._last_progress >= self.options.progress_every_s:
            self._last_progress = done
            LOG.info("%d frames, %.1f fps", self._processed, self._fps())

    def _fps(self) -> float:
        if self._first_start is None or self._last_done is None or self._last_done <= self._first_start:
            return 0.0
        return self._processed / (self._last_done - self._first_start)

    def _shutdown(self, threads: List[threading.Thread]) -> Optional[Exception]:
        """Stop the threads and finalise the outputs; the error finalising raised, if any."""
        self._stop.set()
        self._slot.release()  # a reader waiting for a slot wakes and sees the stop flag
        for thread in threads:
            thread.join(timeout=2.0)
        try:
            self.outputs.close()
        except Exception as exc:
            return exc
        return None

    def _result(self, reason: str, error: Optional[str]) -> RunResult:
        counters = self.source.counters
        wall = (self._last_done - self._first_start) if self._first_start is not None and self._last_done else 0.0
        frames = {
            "read": counters.read,
            "processed": self._processed,
            "dropped": counters.dropped,
            "corrupt": counters.corrupt,
            "reconnects": counters.reconnects,
        }
        info = {"streams": self._streams, "threads": getattr(self.backend, "threads", None)}
        info.update({stage.name: stage.summary() for stage in self.stages})
        return RunResult(reason, frames, self._fps(), wall, self.timings.summary_ms(), error, info)


#: Keys of the stats a depth stage's name may not take.
_RESERVED_NAMES = ("streams", "threads", "exit_reason", "error", "fps", "wall_s", "frames", "stages_ms")


def _check_stage_names(stages: Sequence[DepthStage]) -> List[DepthStage]:
    """The stages, once their names are known to be distinct keys of the stats."""
    names = [stage.name for stage in stages]
    clash = [name for name in names if name in _RESERVED_NAMES or names.count(name) > 1]
    if clash:
        raise UsageError(f"depth stage name {clash[0]!r} is taken (stage names: {names}; reserved: "
                         f"{', '.join(_RESERVED_NAMES)}): give each stage its own name")
    return list(stages)


def _check_streams(streams: int, backend: Backend) -> int:
    if streams < 1:
        raise UsageError(f"streams {streams}: need at least 1 frame in flight")
    if streams > 1 and not getattr(backend, "concurrent_calls", False):
        raise UsageError(f"the {backend.name} backend runs one frame at a time, not {streams}: use streams=1")
    return streams


def _describe(error: BaseException) -> str:
    return describe_os_error(error) if isinstance(error, OSError) else _one_line(error)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
