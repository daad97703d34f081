"""The entry points restart once under jemalloc when it is installed, and never when told not to."""

import sys

import pytest

from rlhf.run import allocator


class Exec:
    def __init__(self):
        self.calls = []

    def __call__(self, path, argv, env):
        self.calls.append((path, argv, env))


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(allocator, "jemalloc_library", lambda: "/lib/libjemalloc.so.2")
    monkeypatch.setattr(sys, "platform", "linux")


def test_restarts_the_same_command_with_jemalloc_preloaded(installed, monkeypatch):
    monkeypatch.setattr(sys, "orig_argv", ["python", "-u", "train.py", "algo=rm"])
    exec_ = Exec()
    allocator.restart_with_jemalloc({"PATH": "/bin", "LD_PRELOAD": "/lib/other.so"}, exec_)
    [(path, argv, env)] = exec_.calls
    assert (path, argv) == (sys.executable, ["python", "-u", "train.py", "algo=rm"])
    assert env["LD_PRELOAD"] == "/lib/libjemalloc.so.2 /lib/other.so"
    assert env["RLHF_ALLOCATOR"] == "jemalloc" and env["PATH"] == "/bin"


@pytest.mark.parametrize(
    "environ",
    [
        {"RLHF_ALLOCATOR": "system"},  # the user keeps glibc's
        {"RLHF_ALLOCATOR": "jemalloc"},  # the restarted process: never a second time
        {"LD_PRELOAD": "/opt/libjemalloc.so"},  # preloaded already
    ],
)
def test_no_restart_when_told_or_done(installed, environ):
    exec_ = Exec()
    allocator.restart_with_jemalloc(environ, exec_)
    assert exec_.calls == []


def test_no_restart_without_the_library(monkeypatch):
    monkeypatch.setattr(allocator, "jemalloc_library", lambda: None)
    exec_ = Exec()
    allocator.restart_with_jemalloc({}, exec_)
    assert exec_.calls == []


def test_the_current_allocator_is_read_from_the_preload(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert allocator.current() == "jemalloc"
    monkeypatch.delenv("LD_PRELOAD")
    assert allocator.current() == "system"
