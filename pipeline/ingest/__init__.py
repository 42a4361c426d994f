"""The ingest program: a local chest_xray tree into HDFS, validated, resumable, with a manifest."""
