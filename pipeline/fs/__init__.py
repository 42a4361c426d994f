"""Files on any Hadoop URI (atomic outputs), WebHDFS for ingest and tasks, HDFS checksums."""
