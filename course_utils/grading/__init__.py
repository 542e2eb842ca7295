"""Student-notebook generation and the batch grader."""
