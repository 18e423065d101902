"""Encoding, indexes and search only: sharded encoding, faiss, the embedded inverted index, Lucene, BM25."""
