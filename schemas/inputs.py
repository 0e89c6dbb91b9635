"""What a run is asked to curate: corpora and their input files, resolved before anything runs (tasks/ingest/inputs.py)
and read by ingest, one task per file."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputFile:
    corpus: str
    path: str  # where to read it
    source_file: str  # its name within the corpus, recorded on every row
    refused: tuple[str, str] | None = None  # (reason, detail): never read (a link out of its root, a folder we cannot list)
    size: int | None = None  # bytes, where a listing gave them (an object on object storage)
    version: str | None = None  # an object's content key as listed (its ETag and size): reuse without reading it


@dataclass
class Corpus:
    name: str
    root: str  # what the user named
    files: list[InputFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # "corpus/file: why" for files in the folder that are not inputs
