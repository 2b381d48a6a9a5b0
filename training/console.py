"""A quiet console for the command-line jobs: TensorFlow's start-up noise, never its errors.

On a machine without a GPU, TensorFlow prints lines a user reads as failures
on every run: its CUDA probe ("failed call to cuInit", "Could not find cuda
drivers", "Unable to register cuDNN factory", ...) and XLA's "Compiled
cluster using XLA!". `quiet_console()`, called by the `training` and
`serving` packages before any of their modules imports TensorFlow:

- sets `TF_CPP_MIN_LOG_LEVEL` to 2 (warnings and info off, errors on) unless
  the user set it (as `make` does, to the same value);
- applies that level to TensorFlow's absl logger too, which ignores the
  variable in TensorFlow 2.20 (XLA's "Compiled cluster" is an absl INFO line);
- on a machine with no GPU driver's device node, runs the import and the
  device probe with stderr captured and replays it without the probe's lines
  (`PROBE_LINE`), which only report that there is no GPU there. At
  `TF_CPP_MIN_LOG_LEVEL=0` (everything) they are replayed too; with a driver
  they are always shown (a failing probe is then a real problem). Setting
  `CUDA_VISIBLE_DEVICES` (to "" or -1) does not silence them, so it is
  neither needed nor changed: the probe calls cuInit all the same.

TensorFlow's internals touched here (the absl symbol, the log lines) were
checked against TensorFlow 2.20.0, whose absl is LTS 2025-01-27; with
another release the absl call is skipped if its symbol is missing.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile

DEFAULT_LOG_LEVEL = "2"

# absl::SetMinLogLevel(absl::LogSeverityAtLeast) of absl LTS 2025-01-27, exported by
# libtensorflow_framework; LogSeverityAtLeast is an int enum (0 info ... 3 fatal), the
# same scale as TF_CPP_MIN_LOG_LEVEL.
ABSL_SET_MIN_LOG_LEVEL = "_ZN4absl12lts_2025012714SetMinLogLevelENS0_18LogSeverityAtLeastE"
FRAMEWORK_LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_framework.2.dylib")

# Device nodes of an NVIDIA driver (Linux; /dev/dxg: WSL 2's GPU). With one of them,
# a failing probe is a real problem and is shown.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg")

# The lines of TensorFlow's GPU probe on a machine without an NVIDIA driver.
PROBE_LINE = re.compile(
    r"failed call to cuInit"
    r"|Could not find cuda drivers"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|Attempting to register factory for plugin cu"
    r"|cuda_diagnostics\.cc"
    r"|All log messages before absl::InitializeLog\(\) is called"
)


def log_level(environ=os.environ):
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it: an int, 0 when unset or not a number."""
    try:
        return int(environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def hides_gpu_probe(environ=os.environ, device_nodes=GPU_DEVICE_NODES):
    """Whether the GPU probe's lines are dropped: no GPU driver's device node, level >= 1.

    Without a driver the probe can only fail, so its lines are taken for
    information: shown at `TF_CPP_MIN_LOG_LEVEL=0` like TensorFlow's others.
    """
    return log_level(environ) >= 1 and not any(os.path.exists(node) for node in device_nodes)


def without_probe_lines(data):
    """The bytes `data` without the lines that `PROBE_LINE` matches."""
    return b"".join(line for line in data.splitlines(keepends=True)
                    if not PROBE_LINE.search(line.decode("utf-8", errors="replace")))


def quiet_console():
    """Quiets TensorFlow's start-up on the console (see the module docstring) and imports it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LOG_LEVEL)
    if hides_gpu_probe():
        with stderr_without_probe_lines():
            import_tensorflow_and_probe_devices()
    else:
        import_tensorflow_and_probe_devices()
    set_absl_min_log_level(log_level())


def import_tensorflow_and_probe_devices():
    import tensorflow as tf

    # Once made, the list is cached: the probe's lines come now, or never.
    tf.config.list_physical_devices("GPU")


class stderr_without_probe_lines:
    """Captures file descriptor 2 (C++ and Python writes alike); replays it without probe lines.

    The replay goes to descriptor 2 as well, byte for byte, whatever `sys.stderr` is.
    """

    def __enter__(self):
        if sys.stderr is not None:
            sys.stderr.flush()
        try:
            self.saved = os.dup(2)
        except OSError:  # no descriptor 2: nothing to quiet
            self.saved = None
            return self
        self.captured = tempfile.TemporaryFile()
        os.dup2(self.captured.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        if self.saved is None:
            return
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        with self.captured:
            self.captured.seek(0)
            kept = without_probe_lines(self.captured.read())
        while kept:
            kept = kept[os.write(2, kept):]


def set_absl_min_log_level(level):
    """Gives absl's logger (loaded with TensorFlow) the minimum severity `level` (0-3)."""
    if level <= 0:
        return  # absl's own default: everything
    import tensorflow as tf

    no_load = getattr(os, "RTLD_NOLOAD", None)
    if no_load is None:  # Windows: no dlopen
        return
    directory = os.path.dirname(tf.__file__)
    for name in FRAMEWORK_LIBRARIES:
        try:
            # RTLD_NOLOAD: the library TensorFlow has loaded, or nothing.
            library = ctypes.CDLL(os.path.join(directory, name),
                                  mode=no_load | os.RTLD_LAZY)
            set_level = getattr(library, ABSL_SET_MIN_LOG_LEVEL)
        except (OSError, AttributeError):
            continue
        set_level.argtypes = [ctypes.c_int]
        set_level.restype = None
        set_level(min(level, 3))
        return
