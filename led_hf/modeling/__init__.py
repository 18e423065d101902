"""Models: dense bi-encoder, SPLADE encoder, cross-encoder; save/load as plain HF folders."""
