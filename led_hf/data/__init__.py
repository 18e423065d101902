"""Data layer: readers (MS MARCO tsv, BEIR jsonl) -> Arrow; prepared-dataset access; TREC run io; training groups."""
