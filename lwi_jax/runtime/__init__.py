"""What a run needs from its surroundings: console output, the workdir lock and Ctrl-C,
checkpoints, atomic file writes, TensorBoard, and how errors end the process."""
