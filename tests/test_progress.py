"""Progress off a terminal is lines that stay; a stage's output is kept in logs/<stage>.log with
the final state of each progress line only (not the redraws)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap

from tests.conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import sys, time
    from onpoint_core.progress import note, progress, stage_log
    stage_log("demo", sys.argv[1])
    bar = progress(total=200, desc="kept bar", unit="step")
    for i in range(200):
        bar.set_postfix(loss=f"{1 / (i + 1):.3f}")
        bar.update(1)
    bar.close()
    for _ in progress(range(300), desc="cleared bar", leave=False):
        pass
    note("epoch 1: loss 0.5")
    print("done")
""")


def run(logs, terminal):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TQDM_MININTERVAL": "0"}
    if not terminal:
        return subprocess.run([sys.executable, "-c", SCRIPT, str(logs)], capture_output=True, text=True, env=env,
                              timeout=60).stderr
    controller, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a 100-column terminal
    try:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT, str(logs)], stdout=child, stderr=child, env=env)
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        process.wait(timeout=60)
    finally:
        os.close(controller)
    return b"".join(chunks).decode()


def test_off_a_terminal_each_loop_prints_a_line_per_tenth_that_stays(tmp_path):
    err = run(tmp_path / "logs", terminal=False)
    assert "\r" not in err
    kept = [line for line in err.splitlines() if line.startswith("kept bar:")]
    assert len(kept) == 10 and kept[0].startswith("kept bar: 20/200 step (10%)") and "loss=" in kept[0]
    assert kept[-1].startswith("kept bar: 200/200 step (100%)")
    assert len([line for line in err.splitlines() if line.startswith("cleared bar:")]) == 10
    log = (tmp_path / "logs" / "demo.log").read_text()
    assert log.splitlines() == [line for line in err.splitlines() if line] + ["done"]


def test_on_a_terminal_bars_redraw_but_the_log_keeps_one_line_each(tmp_path):
    screen = run(tmp_path / "logs", terminal=True)
    assert screen.count("\r") > 20                     # a live bar on the terminal
    log = (tmp_path / "logs" / "demo.log").read_text().splitlines()
    assert len(log) == 3, log                          # the kept bar's last state, the note, the print
    assert log[0].startswith("kept bar: 100%") and "200/200" in log[0]
    assert log[1:] == ["epoch 1: loss 0.5", "done"]


def test_line_counts_for_short_loops_and_a_loop_left_early(capsys):
    from onpoint_core.progress import LineProgress

    for total in (1, 7, 10, 13, 19, 25):
        bar = LineProgress(total=total, desc="n")
        for _ in range(total):
            bar.update(1)
        bar.close()
        lines = capsys.readouterr().err.splitlines()
        assert 1 <= len(lines) <= 10 and lines[-1].startswith(f"n: {total}/{total}"), (total, lines)
    for i in LineProgress(range(100), desc="left"):
        if i == 41:
            break
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("left: 41/100") and len(lines) == 5      # 10..40, then where it stopped


def test_stage_log_again_moves_the_copy_and_a_worker_appends(tmp_path):
    script = textwrap.dedent("""
        import sys
        from onpoint_core.progress import stage_log
        stage_log("a", sys.argv[1]); print("one")
        stage_log("b", sys.argv[1]); print("two")
        stage_log("b", sys.argv[1], append=True); print("three", end="")
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, capture_output=True, env=env, timeout=60)
    assert (tmp_path / "a.log").read_text() == "one\n"
    assert (tmp_path / "b.log").read_text() == "two\nthree\n"       # appended; the unfinished line kept at exit
