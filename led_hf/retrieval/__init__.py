"""Encoding (sharded), faiss search, inverted index, Lucene backend, BM25."""
