"""The read side: queries over the store, the live stream (GET /stream) and the pipeline's health."""
