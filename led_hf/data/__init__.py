"""Data layer: readers (MS MARCO tsv, BEIR jsonl, TREC runs) -> Arrow; prepared-dataset access; training groups."""
