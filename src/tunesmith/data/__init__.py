"""Data ingestion: any supported file layout -> typed :class:`Record` s.

``ingest(specs)`` reads and normalises datasets; ``run(config)`` is the data stage of a run
(ingest + bad-row policy + validation split). Heavy libraries (datasets, pyarrow) are
imported only when a Parquet file, save_to_disk folder or hub id is read.
"""

from tunesmith.data.ingest import IngestResult, ingest
from tunesmith.data.pipeline import DataResult, run
from tunesmith.data.readers import DataSourceError
from tunesmith.data.records import Message, Record, Source, ToolCall

__all__ = [
    "DataResult",
    "DataSourceError",
    "IngestResult",
    "Message",
    "Record",
    "Source",
    "ToolCall",
    "ingest",
    "run",
]
