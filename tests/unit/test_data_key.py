"""The data key: prepare-data's cache key follows the data's content, not its URI (GCS through
fake-gcs-server, the real storage client)."""

from __future__ import annotations

from pathlib import Path

from components.prepare_data.data_key import data_key


def test_an_overwritten_gcs_object_gets_a_new_key_and_an_unchanged_one_keeps_its_own(gcs) -> None:
    bucket = gcs.client().bucket("ckpt")
    bucket.blob("data/dolly.jsonl").upload_from_string(b'{"instruction": "a"}\n')
    bucket.blob("data/other.jsonl").upload_from_string(b'{"instruction": "b"}\n')
    first, other = data_key("gs://ckpt/data/dolly.jsonl"), data_key("gs://ckpt/data/other.jsonl")
    assert first.startswith("gcs:md5:") and first != other

    bucket.blob("data/dolly.jsonl").upload_from_string(b'{"instruction": "changed"}\n')
    assert data_key("gs://ckpt/data/dolly.jsonl") != first, "overwritten in place: new key"
    assert data_key("gs://ckpt/data/other.jsonl") == other, "untouched: same key"
    # The same bytes written again (a new generation) are the same data: no retraining.
    bucket.blob("data/other.jsonl").upload_from_string(b'{"instruction": "b"}\n')
    assert data_key("gs://ckpt/data/other.jsonl") == other


def test_a_gcs_folder_is_keyed_on_every_object_in_it(gcs) -> None:
    bucket = gcs.client().bucket("ckpt")
    bucket.blob("shards/a.jsonl").upload_from_string(b"1\n")
    bucket.blob("shards/b.jsonl").upload_from_string(b"2\n")
    before = data_key("gs://ckpt/shards")
    bucket.blob("shards/b.jsonl").upload_from_string(b"3\n")
    assert data_key("gs://ckpt/shards/") != before


def test_local_and_embedded_files_are_keyed_on_their_bytes(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"instruction": "a"}\n')
    key = data_key(str(f))
    assert key == data_key(str(f)) and key.startswith("sha256:")
    f.write_text('{"instruction": "b"}\n')
    assert data_key(str(f)) != key
    embedded = data_key("embedded://dolly-15k-sample.jsonl")
    assert embedded == data_key("embedded://dolly-15k-sample.jsonl") != key


def test_a_glob_of_shards_is_keyed_on_the_files_it_matches(gcs, tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"part-{i}.jsonl").write_text(f'{{"instruction": "{i}"}}\n')
    (tmp_path / "notes.txt").write_text("x")
    pattern = str(tmp_path / "part-*.jsonl")
    before = data_key(pattern)
    assert before.startswith("glob:sha256:") and data_key(pattern) == before
    (tmp_path / "notes.txt").write_text("y")  # not matched: same key
    assert data_key(pattern) == before
    (tmp_path / "part-1.jsonl").write_text('{"instruction": "changed"}\n')
    assert data_key(pattern) != before
    bucket = gcs.client().bucket("ckpt")
    bucket.blob("s/part-0.jsonl").upload_from_string(b"1\n")
    remote = data_key("gs://ckpt/s/part-*.jsonl")
    bucket.blob("s/part-1.jsonl").upload_from_string(b"2\n")
    assert remote.startswith("glob:") and data_key("gs://ckpt/s/part-*.jsonl") != remote
