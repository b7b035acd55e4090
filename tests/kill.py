"""SIGKILL a training subprocess once it has written a checkpoint at or past a step (the
resume tests of test_train and test_two_tower)."""
from __future__ import annotations

import os
import signal
import time


def steps_in(ckdir) -> list[int]:
  """The checkpoint steps saved in ckdir (orbax step folders), [] before the first."""
  return [int(d) for d in os.listdir(ckdir) if d.isdigit()] if os.path.isdir(ckdir) else []


def kill_after_checkpoint(proc, ckdir, step: int, timeout: float = 600) -> int:
  """Waits until ckdir holds a checkpoint >= step (the process must still be running), then
  SIGKILLs proc; returns the last checkpoint step saved before the kill."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    done = steps_in(ckdir)
    if done and max(done) >= step:
      break
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return max(steps_in(ckdir))
