"""Stop signals inside and outside interruptible blocks, in this process (no MPI)."""
import gc
import os
import signal
import time
import weakref

import numpy as np
import pytest
from helpers import Spin

from smalldata.parallel import shutdown
from smalldata.pipeline.interrupts import describe, in_user_function
from smalldata.testing import make_frames as _make_frames


def make_frames(n: int):
    """``n`` small crop frames of trains 1000001...: what a function sees."""
    return _make_frames(np.zeros((n, 4, 4), np.float32), train_ids=np.arange(1000001, 1000001 + n, dtype=np.uint64))




def send_later(signum: int, seconds: float):
    """SIGALRM after ``seconds`` sends ``signum`` to this process; returns the handler to restore."""
    previous = signal.signal(signal.SIGALRM, lambda s, f: os.kill(os.getpid(), signum))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return previous


def test_interruptible_block_stops_an_endless_loop():
    """Inside interruptible() a SIGTERM raises at once; the message names the function and its method."""
    func = Spin(seconds=1e9)
    func.config_path = "detectors.dssc.functions[0]"
    with shutdown.signals_set_flag():
        with pytest.raises(shutdown.Interrupted) as info:
            with shutdown.interruptible(lambda tb: describe(tb, 1234, "while processing")):
                previous = send_later(signal.SIGTERM, 0.2)
                try:
                    func.process(make_frames(n=1))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
        assert shutdown.received() == signal.SIGTERM
    message = str(info.value)
    assert info.value.exit_status == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in message and "no output written" in message, message
    assert f"in function detectors.dssc.functions[0] ({Spin.__module__}:Spin).process on train 1234" in message, message
    shutdown.reset()


def test_outside_interruptible_a_signal_only_sets_the_flag():
    with shutdown.signals_set_flag():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler ran and returned: no exception here
        assert shutdown.received() == signal.SIGINT
        with pytest.raises(shutdown.Interrupted):  # an interruptible block entered later stops at its start
            with shutdown.interruptible():
                pass
    shutdown.reset()



def test_signal_in_a_finaliser_only_sets_the_flag():
    """Inside a weakref callback (where an exception would be swallowed) the signal does not raise;
    the flag stops the run at its next check."""
    class Owner:
        pass

    seen = []

    def callback(ref):
        os.kill(os.getpid(), signal.SIGTERM)
        seen.append(shutdown.received())

    with shutdown.signals_set_flag():
        with shutdown.interruptible(describe, in_user_function):
            owner = Owner()
            ref = weakref.ref(owner, callback)
            del owner
            gc.collect()
            assert seen == [signal.SIGTERM] and ref() is None
            with pytest.raises(shutdown.Interrupted):
                shutdown.check()
    shutdown.reset()


def test_signal_in_our_code_only_sets_the_flag():
    """In an interruptible block but outside any user function, a signal waits for the next check."""
    with shutdown.signals_set_flag():
        with shutdown.interruptible(describe, in_user_function):
            previous = send_later(signal.SIGINT, 0.05)
            try:
                end = time.monotonic() + 0.5
                while time.monotonic() < end:
                    pass
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            assert shutdown.received() == signal.SIGINT
    shutdown.reset()


def test_user_function_interrupted_with_raise_where():
    func = Spin(seconds=1e9)
    func.config_path = "detectors.dssc.functions[2]"
    with shutdown.signals_set_flag():
        with pytest.raises(shutdown.Interrupted) as info:
            with shutdown.interruptible(lambda tb: describe(tb, 1000005), in_user_function):
                previous = send_later(signal.SIGINT, 0.1)
                try:
                    func.process(make_frames(n=1))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
    assert info.value.exit_status == 130
    assert f"in function detectors.dssc.functions[2] ({Spin.__module__}:Spin).process on train 1000005" in str(info.value)
    shutdown.reset()
