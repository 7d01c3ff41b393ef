"""The one-image web demo: the judging function, and the page driven in a real headless browser."""

from __future__ import annotations

import os
import shutil
import stat
import sys

import numpy as np
import pytest
from click.testing import CliRunner

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def tiny():
    import torch

    from ifas_model.presets import build_model

    torch.manual_seed(0)
    model, processor = build_model("tiny")
    return model.eval(), processor


@pytest.fixture(scope="module")
def face_photo(tmp_path_factory):
    import skimage.data
    from PIL import Image

    path = tmp_path_factory.mktemp("demo") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def test_judge_image_matches_ifas_predict(tiny, face_photo):
    from PIL import Image

    from ifas_eval.demo import judge_image
    from ifas_eval.predict import predict_inputs

    model, processor = tiny
    rgb = np.asarray(Image.open(face_photo).convert("RGB"))
    crop, p_real, line, explanation = judge_image(model, processor, rgb, 0.25)
    (record,) = predict_inputs(model, processor, [str(face_photo)], threshold=0.25)
    assert crop.size == (224, 224)
    assert p_real == pytest.approx(record["p_real"], abs=1e-6)
    assert "threshold 0.2500" in line and "face detected" in line
    assert line.startswith("REAL" if record["judgment"] == "real" else "FAKE")
    assert explanation.startswith(record["answer"])
    # the page shows the answer as training writes it: "Yes. This is ...", not "Yes This is ..."
    from ifas_eval.demo import answer_text

    assert explanation == answer_text(record["answer"], record["explanation"])
    assert answer_text("Yes", "This is a man.") == "Yes. This is a man."
    assert answer_text("No", "") == "No" and answer_text("", "This is a man.") == "This is a man."
    assert judge_image(model, processor, None, 0.5)[2].startswith("No image")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run does)")
def test_page_in_a_real_browser(tiny, face_photo, tmp_path, monkeypatch):
    from ifas_eval.demo import private_temp_dir

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with private_temp_dir(tmp_path) as temp_dir:  # GRADIO_TEMP_DIR under tmp_path, not the shared /tmp/gradio
        _judge_in_a_browser(tiny, face_photo, temp_dir)
    assert not temp_dir.exists()


def _judge_in_a_browser(tiny, face_photo, temp_dir):
    from playwright.sync_api import sync_playwright

    from ifas_eval.demo import build_demo, launch

    model, processor = tiny
    app = build_demo(model, processor, threshold=0.3, model_note="tiny random model")
    launch(app, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)  # gradio finds a free port
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )
            page = browser.new_page()
            page.goto(app.local_url, wait_until="networkidle", timeout=60_000)
            assert "tiny random model" in page.content()
            page.locator("#photo input[type=file]").set_input_files(str(face_photo))
            # the upload is done when the page shows its preview (a fixed wait could click "Judge" before it)
            page.locator("#photo img").first.wait_for(state="visible", timeout=60_000)
            page.locator("#judge").click()
            judgment = page.locator("#judgment textarea")
            page.wait_for_function(
                "() => document.querySelector('#judgment textarea').value.length > 0", timeout=60_000)
            text = judgment.input_value()
            explanation = page.locator("#explanation textarea").input_value()
            p_real = float(page.locator("#p_real input").input_value())
            browser.close()
        # the upload and the face crop went to GRADIO_TEMP_DIR (delete_cache empties it when the app closes)
        kept = sorted(p.name for p in temp_dir.rglob("*") if p.is_file())
        assert "astronaut.png" in kept and "image.webp" in kept, kept
    finally:
        app.close()
    assert text.startswith(("REAL", "FAKE")) and "threshold 0.3000" in text and "face detected" in text
    assert 0.0 <= p_real <= 1.0
    assert explanation  # the generated answer (noise for a random model, but produced by the real path)
    assert not [p for p in temp_dir.rglob("*") if p.is_file()]


def test_demo_serves_from_a_private_folder_removed_at_exit(monkeypatch, tmp_path):
    """Review 10 #4: uploads and face crops went to the shared /tmp/gradio (crops world-readable) and stayed
    after exit; there was no upload limit, and exception text with server paths went to the browser.
    `ifas-demo` now serves from a private folder (0700) that is removed when it stops, with delete_cache,
    max_file_size and show_error=False; the page names a local checkpoint by its last two path parts only."""
    import gradio as gr

    from ifas_eval.cli import demo
    from ifas_eval.demo import DELETE_CACHE, MAX_FILE_SIZE

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    seen = {}

    def fake_launch(self, **kwargs):  # the real page is served in test_page_in_a_real_browser
        folder = os.environ["GRADIO_TEMP_DIR"]
        (gr.utils.Path(folder) / "upload.jpg").write_bytes(b"a face")
        seen.update(kwargs, folder=folder, mode=stat.S_IMODE(os.stat(folder).st_mode), cache=self.GRADIO_CACHE,
                    delete_cache=self.delete_cache,
                    page=" ".join(str(b.value) for b in self.blocks.values() if isinstance(b, gr.Markdown)))

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    res = CliRunner().invoke(demo, ["--preset", "tiny", "--port", "7999"])
    assert res.exit_code == 0, res.output
    assert seen["mode"] == 0o700 and seen["cache"] == seen["folder"]
    assert seen["folder"] in " ".join(res.stderr.split())  # the log line says where the files go
    assert not os.path.exists(seen["folder"]) and "GRADIO_TEMP_DIR" not in os.environ  # removed at exit
    assert seen["delete_cache"] == DELETE_CACHE == (600, 600)
    assert (seen["max_file_size"], seen["show_error"], seen["share"]) == (MAX_FILE_SIZE, False, False)
    assert (seen["server_name"], seen["server_port"]) == ("127.0.0.1", 7999)
    assert "RANDOM, UNTRAINED" in seen["page"]

    from ifas_eval.cli import _shown_checkpoint

    ckpt = tmp_path / "secret-user" / "runs" / "mcio-M" / "final"
    assert _shown_checkpoint(str(ckpt)) == "mcio-M/final"
    assert _shown_checkpoint("org/ifas-mcio-m") == "org/ifas-mcio-m"


def test_the_browser_gets_our_message_not_server_paths(face_photo, tmp_path, monkeypatch):
    """A failure while judging reaches the browser as one message of ours; a non-image upload as Gradio's
    generic error; neither carries the server's temp paths (show_error=False)."""
    from gradio_client import Client, handle_file

    from ifas_eval.demo import ERROR_MESSAGE, build_demo, launch, private_temp_dir

    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with private_temp_dir() as folder:
        app = build_demo(object(), object())  # a "model" that fails when asked to judge
        launch(app, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(app.local_url, verbose=False, download_files=str(tmp_path / "dl"))
            (endpoint,) = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
            with pytest.raises(Exception) as failed:
                client.predict(handle_file(str(face_photo)), 0.5, api_name=endpoint)
            assert str(failed.value) == ERROR_MESSAGE
            bad = tmp_path / "bad.jpg"
            bad.write_text("not an image")
            with pytest.raises(Exception) as not_image:
                client.predict(handle_file(str(bad)), 0.5, api_name=endpoint)
            assert str(folder) not in str(not_image.value) and "Traceback" not in str(not_image.value)
            client.close()
        finally:
            app.close()
    assert not folder.exists()
    # serving again in the same process does not bring the removed folder back (gradio's module-level copies
    # of GRADIO_TEMP_DIR follow the new one)
    with private_temp_dir(tmp_path) as second:
        app = build_demo(object(), object())
        launch(app, host="127.0.0.1", port=None, prevent_thread_lock=True, quiet=True)
        app.close()
    assert not folder.exists() and not second.exists()


def test_a_missing_gradio_is_said_before_the_model_loads(monkeypatch):
    """Review 9 L5: the model loaded first (minutes for a real checkpoint), and any ImportError was blamed on
    Gradio. Gradio is imported first, in its own try; another ImportError is reported as itself."""
    import ifas_eval.cli as cli

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before Gradio was found")

    monkeypatch.setattr(cli, "_load_model", no_model)
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    res = CliRunner().invoke(cli.demo, ["--preset", "tiny"])
    assert res.exit_code == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("Error: the demo needs Gradio: pip install 'ifas-eval[demo]' (")
    monkeypatch.undo()

    def missing_library(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'bitsandbytes'", name="bitsandbytes")

    monkeypatch.setattr(cli, "_load_model", missing_library)
    res = CliRunner().invoke(cli.demo, ["--preset", "tiny"])
    assert res.exit_code == 1 and res.stderr == "Error: No module named 'bitsandbytes'\n"


# `ifas-demo` in a child process with the model, Gradio and the server replaced by stand-ins (the real page is
# served in test_page_in_a_real_browser): the stand-in "server" writes an upload into the private folder, says
# where it is, and blocks as Gradio's launch does until a signal arrives.
_SERVE_UNTIL_SIGNALLED = """
import os, sys, time, types
sys.modules["gradio"] = types.ModuleType("gradio")
import ifas_eval.cli as cli
import ifas_eval.demo as demo

def launch(app, **kwargs):
    folder = os.environ["GRADIO_TEMP_DIR"]
    with open(os.path.join(folder, "upload.jpg"), "wb") as f:
        f.write(b"a face")
    print("SERVING", folder, flush=True)
    while True:
        time.sleep(0.05)

cli._load_model = lambda *args: (None, None)
demo.build_demo = lambda *args, **kwargs: object()
demo.launch = launch
cli.demo.main(["--preset", "tiny"], prog_name="ifas-demo")
"""

_SIGNALS = [name for name in ("SIGHUP", "SIGTERM") if hasattr(__import__("signal"), name)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name", _SIGNALS)
def test_the_private_folder_is_removed_when_the_terminal_closes(name, tmp_path):
    """Review 12 L1: SIGHUP (closed terminal, dropped ssh) killed the demo without removing its private folder
    with the uploaded faces; only SIGTERM and Ctrl-C removed it. Both now end it like Ctrl-C (exit 128+N).
    Review 12 L2: the user's GRADIO_TEMP_DIR holds the private folder, and it and its files are left alone."""
    import signal
    import subprocess

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's own file")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(mine), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, "-c", _SERVE_UNTIL_SIGNALLED], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()  # blocks until the stand-in server is up (or the child died)
        assert line.startswith("SERVING "), (line, child.stderr.read() if child.poll() is not None else "")
        folder = line.split(" ", 1)[1].strip()
        assert os.path.dirname(folder) == str(mine) and os.path.exists(os.path.join(folder, "upload.jpg"))
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        signum = getattr(signal, name)
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signum, stderr  # 129 for SIGHUP, 143 for SIGTERM: killed, it is -N
    assert not os.path.exists(folder)
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]  # the user's folder and file are left alone
    assert "inside your GRADIO_TEMP_DIR" in " ".join(stderr.split())


def test_a_users_gradio_temp_dir_holds_the_private_folder(monkeypatch, tmp_path):
    """Review 12 L2: a GRADIO_TEMP_DIR the user set (say /tmp is a small tmpfs) was silently replaced by
    $TMPDIR. The private folder now goes inside it; only that subfolder is removed, the variable is restored;
    a missing folder is created (as Gradio would); one that cannot hold a folder is a one-line error."""
    import gradio as gr

    from ifas_eval.cli import demo
    from ifas_eval.demo import private_temp_dir, temp_parent

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's own file")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(mine))
    seen = {}

    def fake_launch(self, **kwargs):
        folder = os.environ["GRADIO_TEMP_DIR"]
        (gr.utils.Path(folder) / "upload.jpg").write_bytes(b"a face")
        seen.update(folder=folder, mode=stat.S_IMODE(os.stat(folder).st_mode), cache=self.GRADIO_CACHE)

    monkeypatch.setattr(gr.Blocks, "launch", fake_launch)
    res = CliRunner().invoke(demo, ["--preset", "tiny"])
    assert res.exit_code == 0, res.output
    assert os.path.dirname(seen["folder"]) == str(mine) and seen["cache"] == seen["folder"]
    assert seen["mode"] == 0o700
    assert seen["folder"] in "".join(res.stderr.split())  # rich may wrap the long path anywhere
    assert "inside your GRADIO_TEMP_DIR, which is left as it is" in " ".join(res.stderr.split())
    assert not os.path.exists(seen["folder"])
    assert sorted(p.name for p in mine.iterdir()) == ["keep.txt"]
    assert os.environ["GRADIO_TEMP_DIR"] == str(mine)

    # the Python API follows the variable too; a relative one is made absolute, an empty one is unset
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRADIO_TEMP_DIR", "rel")
    assert temp_parent() == tmp_path / "rel"
    with private_temp_dir() as folder:  # "rel" did not exist: created, and kept afterwards (it is the user's)
        assert folder.parent == tmp_path / "rel"
    assert not folder.exists() and (tmp_path / "rel").is_dir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", " ")
    assert temp_parent() is None

    # a GRADIO_TEMP_DIR that is a file: one line naming it, no traceback
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(not_a_folder))
    res = CliRunner().invoke(demo, ["--preset", "tiny"])
    assert res.exit_code == 1, res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot create the demo's temporary folder in {not_a_folder}: ")
    assert line.endswith("(set GRADIO_TEMP_DIR or TMPDIR to a writable folder)")
    assert not_a_folder.read_text() == "x"
