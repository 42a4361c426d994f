"""The data and its rules: what counts as a usable film, the tree listing, patients, the
patient-grouped split, decoding, the ingest manifest and the synthetic demo tree."""
