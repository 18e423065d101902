"""Teacher inference outside training: `led score-teacher` (`teacher_scores`) and `led rerank` (`rerank`), each
over the teacher models' own `score_candidates`."""
