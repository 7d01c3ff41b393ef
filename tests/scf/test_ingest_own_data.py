"""A user's own data through the generic readers: CSV manifests as spreadsheets write them, folders without splits."""

from __future__ import annotations

import json

import pytest
from ingest_cli import ingest, rows, write_image  # tests/scf/ingest_cli.py


def test_manifest_with_absolute_paths_and_an_excel_bom(tmp_path, face):
    """Review 5 #5: absolute paths under --root are used (stored relative to it); outside it, the row is skipped
    with a reason that says what to do; a UTF-8 byte-order mark does not hide the header."""
    root = tmp_path / "mine"
    write_image(root / "train/real/r0.jpg", face)
    write_image(root / "train/print/f0.png", face)
    write_image(tmp_path / "elsewhere/x.png", face)
    manifest = tmp_path / "abs.csv"
    manifest.write_text(f"path,label,attack_type\n{root}/train/real/r0.jpg,1,\n{root / 'train/print/f0.png'},0,print\n"
                        f"{tmp_path / 'elsewhere/x.png'},0,print\n", encoding="utf-8-sig")  # Excel's CSV UTF-8
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert [(x["path"], x["label"]) for x in rows(tmp_path / "o")] == [("train/print/f0.png", 0),
                                                                       ("train/real/r0.jpg", 1)]
    skip = json.loads((tmp_path / "o/skipped.jsonl").read_text())
    assert skip["key"] == "abs.csv:4" and skip["reason"] == "path outside --root"
    assert skip["detail"] == (f"{tmp_path / 'elsewhere/x.png'} is not under {root}: give --root a folder that holds "
                              "every file of the manifest")


def test_a_relative_path_that_leaves_root_is_skipped_like_an_absolute_one(tmp_path, face):
    """Review 8 #7: '../x.png' in a manifest or a list is outside --root (skipped, row number named)."""
    root = tmp_path / "mine"
    write_image(root / "a.png", face)
    write_image(tmp_path / "x.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,1\n../x.png,0\nsub/../../x.png,0\n")
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(tmp_path / "o")] == ["a.png"]
    skips = [json.loads(line) for line in (tmp_path / "o/skipped.jsonl").read_text().splitlines()]
    assert [(s["key"], s["reason"]) for s in skips] == [("m.csv:3", "path outside --root"),
                                                        ("m.csv:4", "path outside --root")]
    lst = tmp_path / "list.txt"
    lst.write_text("a.png 0\n../x.png 1\n")
    r = ingest("--source", "casia-fas-list", "--label-polarity", "live0", "--root", str(root), "--list", str(lst),
               "--out", str(tmp_path / "o2"))
    assert r.exit_code == 0, r.output
    assert [x["path"] for x in rows(tmp_path / "o2")] == ["a.png"]
    skip = json.loads((tmp_path / "o2/skipped.jsonl").read_text())
    assert (skip["key"], skip["reason"]) == ("list.txt:2", "path outside --root")


def test_manifest_frame_index_orders_the_frames_of_a_video(tmp_path, face):
    """Review 5 #17: two frames of one video, given as images, keep their frame numbers (not 0, 0)."""
    root = tmp_path / "mine"
    write_image(root / "v1_f3.png", face)
    write_image(root / "v1_f9.png", face)
    write_image(root / "v2.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,video_id,frame_index\nv1_f3.png,1,v1,3\nv1_f9.png,1,v1,9\nv2.png,0,v2,\n"
                        "v2.png,0,v2,x\n")
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert [(x["video_id"], x["frame_index"]) for x in rows(tmp_path / "o")] == [("v1", 3), ("v1", 9), ("v2", 0)]
    skip = json.loads((tmp_path / "o/skipped.jsonl").read_text())
    assert skip["key"] == "m.csv:5" and skip["detail"] == "v2.png: frame_index 'x' (an integer 0..2147483647)"
    manifest.write_text("path,label,frame\nv1_f3.png,1,3\n")  # the short name works too
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o2"))
    assert [x["frame_index"] for x in rows(tmp_path / "o2")] == [3]


def test_manifest_frame_index_values_that_crashed_are_skipped_with_the_row_number(tmp_path, face):
    """Review 8 #3: '²' and a value over int32 skip their row (no traceback, the other rows are written);
    pandas' '3.0' is 3; a 'frame' column of file names is someone else's column and is ignored."""
    root = tmp_path / "mine"
    for name in ("a", "b", "c", "d"):
        write_image(root / f"{name}.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,video_id,frame_index\na.png,1,v,\u00b2\nb.png,1,v,2147483648\nc.png,1,v,3.0\n"
                        "d.png,1,v,2147483647\n", encoding="utf-8")
    args = ["--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o")]
    for _ in range(2):  # the rerun is fine too
        r = ingest(*args)
        assert r.exit_code == 0 and r.exception is None, r.output
    assert [(x["path"], x["frame_index"]) for x in rows(tmp_path / "o")] == [("c.png", 3), ("d.png", 2147483647)]
    skips = [json.loads(line) for line in (tmp_path / "o/skipped.jsonl").read_text().splitlines()]
    assert [(s["key"], s["detail"]) for s in skips] == [
        ("m.csv:2", "a.png: frame_index '\u00b2' (an integer 0..2147483647)"),
        ("m.csv:3", "b.png: frame_index '2147483648' (an integer 0..2147483647)")]
    manifest.write_text("path,label,frame\na.png,1,a_frame.png\nb.png,1,\n")  # not frame numbers: not read
    r = ingest("--source", "csv", "--root", str(root), "--list", str(manifest), "--out", str(tmp_path / "o2"))
    assert r.exit_code == 0, r.output
    assert [(x["path"], x["frame_index"]) for x in rows(tmp_path / "o2")] == [("a.png", 0), ("b.png", 0)]


def test_images_without_split_folders_are_said_to_go_to_test(tmp_path, face):
    """Review 5 #9: a real/ + fake/ folder without train/test folders gives split test, and the summary says so."""
    for name in ("real/a.png", "real/b.png", "fake/c.png"):
        write_image(tmp_path / "flat" / name, face)
    args = ["--source", "image-folder", "--root", str(tmp_path / "flat")]
    r = ingest(*args, "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    assert "note: 3 item(s) had no split folder (train/, dev/, test/) or split column and no --split, so they went " \
           "to the 'test' split; to train on them, sort them into train/ and test/ folders (or a split column), or " \
           "ingest with --split train" in r.output
    assert {x["split"] for x in rows(tmp_path / "o")} == {"test"}
    assert json.loads((tmp_path / "o/ingest_summary.json").read_text())["notes"][0].startswith("3 item(s)")
    r = ingest(*args, "--out", str(tmp_path / "o2"), "--split", "train")
    assert r.exit_code == 0 and "note:" not in r.output
    assert {x["split"] for x in rows(tmp_path / "o2")} == {"train"}


def test_the_no_split_note_counts_the_items_written_and_is_printed_once(tmp_path, face):
    """Review 8 #6: of 4 manifest rows without a split, a duplicate, a missing file and a bad frame_index give no
    row; the note counts the one item written, on the first run and on a rerun, and is printed once."""
    write_image(tmp_path / "mine/a.png", face)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,frame_index\na.png,1,0\na.png,1,0\ngone.png,0,0\na.png,1,x\n")
    args = ["--source", "csv", "--root", str(tmp_path / "mine"), "--list", str(manifest), "--out", str(tmp_path / "o")]
    for _ in range(2):
        r = ingest(*args)
        assert r.exit_code == 0, r.output
        assert r.output.count("no split folder") == 1 and "note: 1 item(s) had no split folder" in r.output, r.output
    assert [x["split"] for x in rows(tmp_path / "o")] == ["test"]


@pytest.mark.parametrize("columns", [80, 120])
def test_list_sources_shows_every_layout_whole_in_a_narrow_terminal(columns):
    """Review 5 #10: the layouts wrap instead of ending in an ellipsis."""
    import io

    from rich.console import Console

    from scf.ingest.command import list_sources_table
    from scf.ingest.registry import SOURCES

    buffer = io.StringIO()
    Console(file=buffer, width=columns).print(list_sources_table())
    text = buffer.getvalue()
    assert "…" not in text
    last_cells = "".join(line.rsplit("│", 2)[1].strip() for line in text.splitlines() if line.count("│") == 5)
    for cls in SOURCES.values():
        assert cls.layout.replace(" ", "") in last_cells.replace(" ", ""), cls.name
