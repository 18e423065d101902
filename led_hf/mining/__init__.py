"""`led mine`: the job and its work folder (`job`), one searcher per model kind (`search`), negative filters (`filters`)."""
